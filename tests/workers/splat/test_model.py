"""Gaussian parameters: frustum initialisation, Adam state through growth and pruning, densification."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modal_workers.splat.camera import Camera, Intrinsics, look_at
from modal_workers.splat.densify import SPLIT_SHRINK, DensifyConfig, GradStats, densify_and_prune
from modal_workers.splat.model import SH_C0, GaussianModel, Gaussians, LearningRates, frustum_init


def test_frustum_init_places_coloured_gaussians_inside_the_view() -> None:
    cam = Camera(Intrinsics.from_fov(40, 30, 70.0), look_at((1.0, -1.0, 0.5), (0.0, 0.0, 0.0)))
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    g = frustum_init(cam, image, 500, near=0.2, far=3.0, sh_degree=2, generator=torch.Generator().manual_seed(1))
    assert g.count == 500
    assert g.sh_degree == 2
    local = (g.means.double() - torch.as_tensor(cam.position)) @ torch.as_tensor(cam.cam_to_world[:3, :3])
    depth = local[:, 2]
    assert depth.min() >= 0.2 - 1e-5
    assert depth.max() <= 3.0 + 1e-5
    assert depth.max() - depth.min() > 2.0  # spread over the range
    k = cam.intrinsics
    u = k.fx * local[:, 0] / depth + k.cx
    v = k.fy * local[:, 1] / depth + k.cy
    assert u.min() >= 0
    assert u.max() <= 40
    assert v.min() >= 0
    assert v.max() <= 30
    colours = (g.sh_dc * SH_C0 + 0.5) * 255
    pixels = torch.as_tensor(image[v.long().clamp(max=29), u.long().clamp(max=39)], dtype=torch.float32)
    torch.testing.assert_close(colours, pixels, atol=1e-3, rtol=0)
    assert torch.equal(g.sh_rest, torch.zeros(500, 8, 3))
    footprint = g.log_scales.exp()[:, 0] * k.fx / depth  # about the pixel spacing at any depth
    assert footprint.float().std() / footprint.float().mean() < 1e-3
    assert torch.sigmoid(g.opacity_logits).allclose(torch.tensor(0.1))


def small_model(count: int = 10, extent: float = 2.0) -> GaussianModel:
    g = Gaussians(
        torch.randn(count, 3),
        torch.full((count, 3), -3.0),
        torch.tensor([1.0, 0, 0, 0]).repeat(count, 1),
        torch.zeros(count),
        torch.zeros(count, 3),
        torch.zeros(count, 3, 3),
    )
    return GaussianModel(g, LearningRates(), extent=extent)


def test_each_parameter_has_its_learning_rate_and_keeps_its_adam_state() -> None:
    model = small_model(10, extent=2.0)
    rates = {g["name"]: g["lr"] for g in model.optimizer.param_groups}
    assert rates["means"] == pytest.approx(LearningRates().means * 2.0)
    assert rates["opacity_logits"] == LearningRates().opacity_logits
    g = model.gaussians
    sum(
        t.pow(2).sum() + t.sum() for t in (g.means, g.log_scales, g.quats, g.opacity_logits, g.sh_dc, g.sh_rest)
    ).backward()
    model.step()
    state = {name: model.optimizer.state[p]["exp_avg"].clone() for name, p in model.params.items()}
    keep = torch.tensor([True, False] * 5)
    model.keep(keep)
    model.append(small_model(3).gaussians.map(lambda t: t.detach() + 1))
    assert model.count == 8
    for name, p in model.params.items():
        moments = model.optimizer.state[p]["exp_avg"]
        assert moments.shape == p.shape
        torch.testing.assert_close(moments[:5], state[name][keep])
        assert torch.equal(moments[5:], torch.zeros_like(moments[5:]))
        group = next(grp for grp in model.optimizer.param_groups if grp["name"] == name)
        assert group["params"][0] is p
    assert torch.equal(model.params["log_scales"][5:], torch.full((3, 3), -2.0))
    model.gaussians.means.sum().backward()  # the new leaves train
    model.step()
    assert model.optimizer.state[model.params["means"]]["exp_avg"][5:].abs().sum() > 0


def test_grad_stats_are_ndc_scaled_and_counted_where_visible() -> None:
    stats = GradStats(3)
    means2d = torch.zeros(3, 2, requires_grad=True)
    (means2d * torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])).sum().backward()
    stats.add(means2d, torch.tensor([True, True, False]), width=10, height=20, views=2)
    stats.add(means2d, torch.tensor([True, False, False]), width=10, height=20, views=2)
    torch.testing.assert_close(stats.mean(), torch.tensor([5.0 * 2, 20.0 * 2, 0.0]))


def densify_case() -> tuple[GaussianModel, GradStats]:
    """Five Gaussians: small+busy, large+busy, transparent, huge, quiet; extent 1."""
    log_scales = torch.log(torch.tensor([0.005, 0.05, 0.005, 0.5, 0.005]))[:, None].repeat(1, 3)
    g = Gaussians(
        torch.arange(15.0).reshape(5, 3),
        log_scales,
        torch.tensor([1.0, 0, 0, 0]).repeat(5, 1),
        torch.tensor([2.0, 2.0, -8.0, 2.0, 2.0]),
        torch.arange(15.0).reshape(5, 3),
        torch.zeros(5, 0, 3),
    )
    stats = GradStats(5)
    stats.grad, stats.seen = torch.tensor([3e-4, 5e-4, 9e-4, 9e-4, 1e-4]), torch.ones(5)
    return GaussianModel(g, LearningRates(), extent=1.0), stats


def test_densify_clones_small_splits_large_and_prunes() -> None:
    model, stats = densify_case()
    report = densify_and_prune(model, stats, DensifyConfig(), 100, torch.Generator().manual_seed(0))
    assert (report.cloned, report.split, report.pruned, report.count) == (1, 1, 2, 5)
    g = model.gaussians
    # Kept: the busy small one and the quiet one; then the clone; then the two halves of the split.
    assert g.sh_dc[:, 0].tolist() == [0.0, 12.0, 0.0, 3.0, 3.0]
    torch.testing.assert_close(g.means[2], torch.tensor([0.0, 1.0, 2.0]))
    halves = g.log_scales[3:].exp()
    torch.testing.assert_close(halves, torch.full((2, 3), 0.05 / SPLIT_SHRINK))
    assert (g.means[3:] - torch.tensor([3.0, 4.0, 5.0])).norm(dim=-1).max() < 0.05 * 5
    assert stats.grad.shape == (5,)
    assert stats.grad.sum() == 0


def test_densify_never_exceeds_the_budget_and_prefers_large_gradients() -> None:
    model, stats = densify_case()
    report = densify_and_prune(model, stats, DensifyConfig(), 4, torch.Generator().manual_seed(0))
    assert report.count == 4  # 5 - 2 pruned leaves room for one: the larger gradient (the split) wins
    assert (report.cloned, report.split) == (0, 1)
    model, stats = densify_case()
    stats.grad = torch.full((5,), 1e-3)
    full = densify_and_prune(model, stats, DensifyConfig(prune_opacity=0.0, prune_max_scale=10.0), 5, torch.Generator())
    assert (full.cloned, full.split, full.pruned, full.count) == (0, 0, 0, 5)
