"""Adaptive density control of the splat workload: clone, split and prune Gaussians (3DGS style).

API:

* :class:`GradStats`: per Gaussian, the accumulated norm of the view-space (NDC-scaled) gradient of
  its projected centre and the number of renders that saw it; :meth:`GradStats.add` after each
  ``backward()`` with the render's ``means2d`` and ``visible``.
* :func:`densify_and_prune` (model, stats, :class:`DensifyConfig`, ``max_gaussians``): Gaussians whose
  mean gradient reaches ``grad_threshold`` are *cloned* when small (largest scale ≤
  ``clone_max_scale`` × extent) and *split* into two smaller ones sampled from themselves when large;
  Gaussians with opacity below ``prune_opacity`` or a scale above ``prune_max_scale`` × extent are
  removed. The count never exceeds ``max_gaussians``: when the budget is short, the largest gradients
  win. Returns a :class:`DensifyReport` and resets the statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from modal_workers.splat.model import GaussianModel, Gaussians
from modal_workers.splat.raster import covariances

SPLIT_SHRINK = 1.6
"""A split Gaussian's two children have its scales divided by this (as in 3DGS)."""


@dataclass(frozen=True)
class DensifyConfig:
    """Thresholds of adaptive density control (scales relative to the model's extent)."""

    grad_threshold: float = 2e-4
    clone_max_scale: float = 0.01
    prune_opacity: float = 0.005
    prune_max_scale: float = 0.1


@dataclass(frozen=True)
class DensifyReport:
    """What one densify-and-prune pass did."""

    cloned: int
    split: int
    pruned: int
    count: int


class GradStats:
    """Accumulated view-space gradient norms and visibility counts, one per Gaussian."""

    def __init__(self, count: int, device: torch.device | str = "cpu") -> None:
        self.grad = torch.zeros(count, device=device)
        self.seen = torch.zeros(count, device=device)

    def reset(self, count: int) -> None:
        """Start again for ``count`` Gaussians."""
        self.grad = torch.zeros(count, device=self.grad.device)
        self.seen = torch.zeros(count, device=self.seen.device)

    def extend(self, count: int) -> None:
        """Grow to ``count`` Gaussians (appended ones start at zero)."""
        extra = count - len(self.grad)
        self.grad = torch.cat([self.grad, torch.zeros(extra, device=self.grad.device)])
        self.seen = torch.cat([self.seen, torch.zeros(extra, device=self.seen.device)])

    def add(self, means2d: Tensor, visible: Tensor, width: int, height: int, views: int = 1) -> None:
        """Add one render's gradient (``means2d.grad``, pixels) as NDC units; ``views`` renders shared the loss."""
        if means2d.grad is None:
            return
        grad = means2d.grad.detach().reshape(-1, 2) * torch.tensor([width / 2.0, height / 2.0], device=means2d.device)
        self.grad += grad.norm(dim=-1) * views * visible
        self.seen += visible.to(self.seen.dtype)

    def mean(self) -> Tensor:
        """The mean gradient norm per Gaussian over the renders that saw it."""
        return self.grad / self.seen.clamp(min=1.0)


def _split(g: Gaussians, generator: torch.Generator) -> Gaussians:
    """Two children per Gaussian of ``g``, positioned by sampling from it, scales divided by ``SPLIT_SHRINK``."""
    scales = g.log_scales.exp()
    cov = covariances(g.quats, scales)
    noise = torch.randn((2, g.count, 3), generator=generator).to(g.means.device)
    chol = torch.linalg.cholesky(cov + 1e-12 * torch.eye(3, device=cov.device))
    offsets = (chol[None] @ noise[..., None]).squeeze(-1)
    twice = g.map(lambda t: torch.cat([t, t]))
    return replace(
        twice, means=(g.means[None] + offsets).reshape(-1, 3), log_scales=twice.log_scales - math.log(SPLIT_SHRINK)
    )


def densify_and_prune(
    model: GaussianModel, stats: GradStats, config: DensifyConfig, max_gaussians: int, generator: torch.Generator
) -> DensifyReport:
    """One clone/split/prune pass over ``model`` (see the module docstring); resets ``stats``."""
    with torch.no_grad():
        g = model.gaussians.map(lambda t: t.detach())
        largest = g.log_scales.exp().max(dim=-1).values
        grads = stats.mean()
        prune = (torch.sigmoid(g.opacity_logits) < config.prune_opacity) | (
            largest > config.prune_max_scale * model.extent
        )
        wanted = (grads >= config.grad_threshold) & ~prune
        budget = max(0, max_gaussians - (g.count - int(prune.sum())))
        if int(wanted.sum()) > budget:
            ranked = torch.argsort(torch.where(wanted, grads, torch.full_like(grads, -1.0)), descending=True)
            wanted = torch.zeros_like(wanted)
            wanted[ranked[:budget]] = True
        small = largest <= config.clone_max_scale * model.extent
        clone, split = wanted & small, wanted & ~small
        new = g.map(lambda t: t[clone]).cat(_split(g.map(lambda t: t[split]), generator))
    model.keep(~(prune | split))
    model.append(new)
    stats.reset(model.count)
    return DensifyReport(int(clone.sum()), int(split.sum()), int(prune.sum()), model.count)
