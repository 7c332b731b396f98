"""The pure-torch Gaussian rasterizer: EWA projection against gsplat's torch reference, compositing, SH."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modal_workers.splat.model import Gaussians, rgb_to_sh_dc
from modal_workers.splat.raster import EPS2D, covariances, project, rasterize, sh_colors
from tests.workers.splat.support import camera, random_gaussians

ROOT = Path(__file__).resolve().parents[3]


def test_projection_matches_gsplats_torch_reference() -> None:
    from gsplat.cuda._torch_impl import _fully_fused_projection, _persp_proj, _world_to_cam

    g = random_gaussians(450, seed=3).cat(random_gaussians(50, seed=4, centre=-0.5))
    covars = covariances(g.quats, g.log_scales.exp())
    viewmat, K = camera()
    ours = project(g.means, covars, viewmat, K, 64, 48)
    radii, means2d, depths, conics, _ = _fully_fused_projection(g.means, covars, viewmat[None], K[None], 64, 48)
    in_front = ours.depths > 0.01
    assert 400 < int(in_front.sum()) < 500  # some behind the camera, most in front
    torch.testing.assert_close(ours.depths, depths[0])
    torch.testing.assert_close(ours.radii, radii[0])
    torch.testing.assert_close(ours.means2d[in_front], means2d[0][in_front], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ours.conics[in_front], conics[0][in_front], rtol=1e-4, atol=1e-5)
    means_c, covars_c = _world_to_cam(g.means, covars, viewmat[None])
    _, cov2d = _persp_proj(means_c, covars_c, K[None], 64, 48)
    torch.testing.assert_close(ours.cov2d[in_front], cov2d[0][in_front], rtol=1e-4, atol=1e-4)
    assert int((ours.radii > 0).all(-1).sum()) > 200


def test_projection_hand_derived() -> None:
    """An isotropic Gaussian of scale s at (x, 0, z) in camera space: J = [[f/z, 0, -f x/z²], [0, f/z, 0]]."""
    s, x, z, f, cx, cy = 0.1, 0.5, 2.0, 100.0, 32.0, 24.0
    K = torch.tensor([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    means = torch.tensor([[x, 0.0, z], [0.0, 0.0, z]])
    p = project(means, torch.eye(3).repeat(2, 1, 1) * s * s, torch.eye(4), K, 64, 48)
    torch.testing.assert_close(p.means2d, torch.tensor([[f * x / z + cx, cy], [cx, cy]]))
    var_x = s * s * (f * f / z**2 + (f * x / z**2) ** 2)
    var_y = s * s * f * f / z**2
    torch.testing.assert_close(p.cov2d[0], torch.tensor([[var_x, 0.0], [0.0, var_y]]))
    torch.testing.assert_close(p.conics[1], torch.tensor([1 / (var_y + EPS2D), 0.0, 1 / (var_y + EPS2D)]))
    torch.testing.assert_close(p.depths, torch.tensor([z, z]))
    assert p.radii[1].tolist() == [math.ceil(3.33 * math.sqrt(var_y + EPS2D))] * 2


def loop_composite(g: Gaussians, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int) -> np.ndarray:
    """An independent per-pixel loop: every Gaussian, nearest first, alpha-blended over black."""
    p = project(g.means, covariances(g.quats, g.log_scales.exp()), viewmat, K, width, height)
    colors = (0.5 + 0.28209479177387814 * g.sh_dc).clamp(min=0).numpy()
    opacity = torch.sigmoid(g.opacity_logits).numpy()
    order = [i for i in np.argsort(p.depths.numpy()) if p.radii[i].min() > 0]
    image = np.zeros((height, width, 3))
    for yy in range(height):
        for xx in range(width):
            trans = 1.0
            for i in order:
                d = np.array([xx + 0.5, yy + 0.5]) - p.means2d[i].numpy()
                a, b, c = p.conics[i].tolist()
                alpha = min(0.999, opacity[i] * math.exp(-(0.5 * (a * d[0] ** 2 + c * d[1] ** 2) + b * d[0] * d[1])))
                if alpha >= 1 / 255:
                    image[yy, xx] += trans * alpha * colors[i]
                    trans *= 1 - alpha
    return image


def test_tiles_and_dense_agree_with_a_per_pixel_loop() -> None:
    g = random_gaussians(40, seed=5)
    viewmat, K = camera(20, 15)
    expected = loop_composite(g, viewmat, K, 20, 15)
    assert expected.max() > 0.3
    for backend, tile in (("tiles", 8), ("tiles", 4), ("dense", 8)):
        out = rasterize(g, viewmat, K, 20, 15, backend=backend, tile=tile)  # type: ignore[arg-type]
        assert out.image.shape == (15, 20, 3)
        np.testing.assert_allclose(out.image.numpy(), expected, atol=2e-5, err_msg=f"{backend} {tile}")


def test_tiles_and_dense_have_the_same_gradients() -> None:
    base = random_gaussians(600, seed=2, sh_degree=1)
    viewmat, K = camera(50, 37)
    grads = {}
    for backend in ("tiles", "dense"):
        g = base.map(lambda t: t.clone().requires_grad_())
        out = rasterize(g, viewmat, K, 50, 37, sh_degree=1, background=torch.tensor([0.2, 0.3, 0.4]), backend=backend)
        (out.image * torch.linspace(0, 1, 3)).sum().backward()
        grads[backend] = [t.grad for t in (g.means, g.log_scales, g.quats, g.opacity_logits, g.sh_dc, g.sh_rest)]
        assert out.means2d.grad is not None
        assert out.means2d.grad.abs().sum() > 0
    for ours, ref in zip(grads["tiles"], grads["dense"], strict=True):
        assert ours is not None
        assert ref is not None
        assert torch.isfinite(ours).all()
        torch.testing.assert_close(ours, ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max()))


def test_a_single_gaussian_blends_over_the_background_and_the_nearest_one_covers() -> None:
    K = torch.tensor([[40.0, 0.0, 16.5], [0.0, 40.0, 16.5], [0.0, 0.0, 1.0]])  # the axis hits pixel (16, 16)'s centre
    red = Gaussians(
        means=torch.tensor([[0.0, 0.0, 1.0]]),
        log_scales=torch.full((1, 3), math.log(0.05)),
        quats=torch.tensor([[1.0, 0, 0, 0]]),
        opacity_logits=torch.tensor([0.0]),
        sh_dc=rgb_to_sh_dc(torch.tensor([[1.0, 0.0, 0.0]])),
        sh_rest=torch.zeros(1, 0, 3),
    )
    bg = torch.tensor([0.0, 0.0, 1.0])
    out = rasterize(red, torch.eye(4), K, 32, 32, background=bg)
    torch.testing.assert_close(out.image[16, 16], torch.tensor([0.5, 0.0, 0.5]))  # opacity sigmoid(0) = 0.5
    assert out.alpha[16, 16] == pytest.approx(0.5)
    assert out.alpha[0, 0] == 0.0
    torch.testing.assert_close(out.image[0, 0], bg)
    green = Gaussians(
        torch.tensor([[0.0, 0.0, 0.8]]),
        red.log_scales,
        red.quats,
        torch.tensor([10.0]),
        rgb_to_sh_dc(torch.tensor([[0.0, 1.0, 0.0]])),
        red.sh_rest,
    )
    for pair in (red.cat(green), green.cat(red)):
        pixel = rasterize(pair, torch.eye(4), K, 32, 32, background=bg).image[16, 16]
        assert pixel[1] > 0.99
        assert pixel[0] < 0.01


def test_gaussians_behind_or_beside_the_camera_give_no_nan() -> None:
    g = random_gaussians(300, seed=9, centre=0.0).map(lambda t: t.clone().requires_grad_())
    viewmat, K = camera()
    out = rasterize(g, viewmat, K, 64, 48)
    out.image.sum().backward()
    assert 0 < int(out.visible.sum()) < 300
    assert g.means.grad is not None
    assert torch.isfinite(g.means.grad).all()
    empty = Gaussians.empty(0)
    blank = rasterize(empty, viewmat, K, 16, 8, background=torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(blank.image, torch.tensor([0.1, 0.2, 0.3]).expand(8, 16, 3))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_colours_match_gsplats_reference(degree: int) -> None:
    from gsplat.cuda._torch_impl import _spherical_harmonics

    gen = torch.Generator().manual_seed(degree)
    coeffs = torch.randn(200, 16, 3, generator=gen) * 0.3
    dirs = torch.randn(200, 3, generator=gen)
    expected = (_spherical_harmonics(degree, dirs, coeffs) + 0.5).clamp(min=0)
    torch.testing.assert_close(sh_colors(coeffs[:, : (degree + 1) ** 2], dirs, degree), expected)


def test_cpu_rendering_never_imports_gsplat_and_gsplat_needs_cuda() -> None:
    code = (
        "import sys, torch; from modal_workers.splat.model import Gaussians; "
        "from modal_workers.splat.raster import rasterize; "
        "g = Gaussians(torch.tensor([[0., 0., 2.]]), torch.full((1, 3), -3.), torch.tensor([[1., 0, 0, 0]]), "
        "torch.zeros(1), torch.zeros(1, 3), torch.zeros(1, 0, 3)); "
        "out = rasterize(g, torch.eye(4), torch.tensor([[20., 0, 8.5], [0, 20., 8.5], [0, 0, 1]]), 16, 16); "
        "print(round(float(out.alpha.max()), 3), 'gsplat' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.5", "False"]
    if not torch.cuda.is_available():
        g = random_gaussians(4)
        with pytest.raises(ValueError, match="CUDA"):
            rasterize(g, torch.eye(4), camera()[1], 64, 48, backend="gsplat")
