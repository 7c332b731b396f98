"""3D Gaussians of the splat workload: the parameters, their optimiser and their initialisation.

API:

* :class:`Gaussians`: plain tensors in the 3DGS parametrisation, the form the rasterizer and the
  PLY file use: ``means`` (N, 3), ``log_scales`` (N, 3), ``quats`` (N, 4, **w first**, not
  necessarily normalised), ``opacity_logits`` (N,), ``sh_dc`` (N, 3) and ``sh_rest`` (N, K - 1, 3)
  spherical-harmonic colour coefficients, K = (degree + 1)²; colour = SH(view direction) + 0.5.
* :class:`GaussianModel`: those tensors as leaf parameters with one Adam optimiser holding a group
  (learning rate) per parameter (:class:`LearningRates`); :meth:`GaussianModel.append` and
  :meth:`GaussianModel.keep` grow and shrink every parameter *and* its Adam moments together
  (new Gaussians start with zero moments), which is what densification and pruning need.
* :func:`frustum_init`: ``count`` Gaussians in one camera's view frustum: random pixels (all, or
  the given ones), random depths uniform in [near, far], colours from those pixels, isotropic
  scales of half the spacing between samples at their depth, opacity 0.1, higher SH terms zero.

torch is imported at module level: only the workload imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from modal_workers.splat.camera import Camera

SH_C0 = 0.28209479177387814
"""The degree-0 SH basis constant: colour = SH_C0 * dc + 0.5."""
PARAMS = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")
INIT_OPACITY = 0.1


@dataclass(frozen=True)
class Gaussians:
    """N Gaussians as plain tensors (see the module docstring for shapes and conventions)."""

    means: Tensor
    log_scales: Tensor
    quats: Tensor
    opacity_logits: Tensor
    sh_dc: Tensor
    sh_rest: Tensor

    @property
    def count(self) -> int:
        """N."""
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        """The SH degree the coefficients hold (0 to 3)."""
        return math.isqrt(int(self.sh_rest.shape[1]) + 1) - 1

    @property
    def sh(self) -> Tensor:
        """All SH coefficients, (N, K, 3)."""
        return torch.cat([self.sh_dc[:, None, :], self.sh_rest], dim=1)

    def map(self, fn: Callable[[Tensor], Tensor]) -> Gaussians:
        """The same Gaussians with ``fn`` applied to every tensor (indexing, ``.detach()``, ``.to()``)."""
        return Gaussians(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def cat(self, other: Gaussians) -> Gaussians:
        """These Gaussians followed by ``other``'s."""
        return Gaussians(**{f.name: torch.cat([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)})

    @staticmethod
    def empty(sh_degree: int, device: torch.device | str = "cpu") -> Gaussians:
        """No Gaussians."""
        rest = (sh_degree + 1) ** 2 - 1
        z = torch.zeros
        return Gaussians(
            z(0, 3, device=device),
            z(0, 3, device=device),
            z(0, 4, device=device),
            z(0, device=device),
            z(0, 3, device=device),
            z(0, rest, 3, device=device),
        )


def fitted(g: Gaussians, sh_degree: int, budget: int) -> Gaussians:
    """``g`` with ``sh_degree`` (higher coefficients cut, missing ones zero) and at most ``budget`` Gaussians
    (the most opaque kept): Gaussians read back into a trainer configured otherwise."""
    rest = (sh_degree + 1) ** 2 - 1
    have = int(g.sh_rest.shape[1])
    if have > rest:
        g = Gaussians(g.means, g.log_scales, g.quats, g.opacity_logits, g.sh_dc, g.sh_rest[:, :rest])
    elif have < rest:
        pad = torch.zeros(g.count, rest - have, 3, dtype=g.sh_rest.dtype)
        g = Gaussians(g.means, g.log_scales, g.quats, g.opacity_logits, g.sh_dc, torch.cat([g.sh_rest, pad], 1))
    if g.count > budget:
        keep = torch.topk(g.opacity_logits, budget).indices.sort().values
        g = g.map(lambda t: t[keep])
    return g


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    """Colours in [0, 1] → degree-0 coefficients."""
    return (rgb - 0.5) / SH_C0


@dataclass(frozen=True)
class LearningRates:
    """Adam learning rate per parameter (``means`` is multiplied by the scene extent)."""

    means: float = 1.6e-3
    log_scales: float = 5e-3
    quats: float = 1e-3
    opacity_logits: float = 5e-2
    sh_dc: float = 2.5e-3
    sh_rest: float = 1.25e-4


class GaussianModel:
    """Trainable Gaussians: one leaf parameter per field of :class:`Gaussians`, one Adam optimiser."""

    def __init__(self, initial: Gaussians, lrs: LearningRates, extent: float = 1.0) -> None:
        self.extent = extent
        self.params = {name: torch.nn.Parameter(getattr(initial, name).detach().clone()) for name in PARAMS}
        groups = [
            {"params": [p], "lr": getattr(lrs, name) * (extent if name == "means" else 1.0), "name": name}
            for name, p in self.params.items()
        ]
        self.optimizer = torch.optim.Adam(groups, lr=0.0, eps=1e-15)

    @property
    def gaussians(self) -> Gaussians:
        """The current parameters (autograd-connected)."""
        return Gaussians(**self.params)

    @property
    def count(self) -> int:
        """N."""
        return int(self.params["means"].shape[0])

    def step(self) -> None:
        """One optimiser step, then clear the gradients."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _replace(self, edit: Callable[[Tensor, str], Tensor]) -> None:
        """Swap every parameter for ``edit(param, name)`` and apply the same edit to its Adam moments."""
        for group in self.optimizer.param_groups:
            name, old = group["name"], group["params"][0]
            new = torch.nn.Parameter(edit(old.detach(), name))
            state = self.optimizer.state.pop(old, None)
            if state:
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = edit(state[key], "")
                self.optimizer.state[new] = state
            group["params"][0] = new
            self.params[name] = new

    def keep(self, mask: Tensor) -> None:
        """Keep the Gaussians where ``mask`` (N,) is true."""
        self._replace(lambda t, _name: t[mask].contiguous())

    def append(self, new: Gaussians) -> None:
        """Add Gaussians (their Adam moments start at zero)."""

        def grow(t: Tensor, name: str) -> Tensor:
            tail = getattr(new, name).detach() if name else torch.zeros((new.count, *t.shape[1:]), dtype=t.dtype)
            return torch.cat([t, tail.to(t.device, t.dtype)])

        self._replace(grow)


def frustum_init(
    camera: Camera,
    image: np.ndarray,
    count: int,
    near: float,
    far: float,
    sh_degree: int,
    generator: torch.Generator,
    pixels: Tensor | None = None,
) -> Gaussians:
    """``count`` Gaussians in ``camera``'s frustum coloured by ``image`` (H × W × 3 uint8).

    ``pixels``: flat indices (``y * W + x``) of the pixels to seed from (default: all of them).
    """
    k, (height, width) = camera.intrinsics, image.shape[:2]
    area = width * height if pixels is None else len(pixels)
    if pixels is None:
        u = torch.rand(count, generator=generator) * width
        v = torch.rand(count, generator=generator) * height
    else:
        chosen = pixels[torch.randint(len(pixels), (count,), generator=generator)]
        u = (chosen % width).float() + torch.rand(count, generator=generator)
        v = torch.div(chosen, width, rounding_mode="floor").float() + torch.rand(count, generator=generator)
    depth = near + torch.rand(count, generator=generator) * (far - near)
    rays = torch.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, torch.ones(count)], dim=1)
    pose = torch.as_tensor(camera.cam_to_world, dtype=torch.float32)
    means = (rays * depth[:, None]) @ pose[:3, :3].T + pose[:3, 3]
    colours = torch.as_tensor(image, dtype=torch.float32)[v.long().clamp(max=height - 1), u.long().clamp(max=width - 1)]
    spacing = 0.5 * math.sqrt(area / count)  # half the pixels between neighbouring samples
    scale = (spacing * depth / k.fx).clamp(min=1e-6)
    rest = (sh_degree + 1) ** 2 - 1
    return Gaussians(
        means=means,
        log_scales=scale.log()[:, None].repeat(1, 3),
        quats=torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(count, 1),
        opacity_logits=torch.full((count,), math.log(INIT_OPACITY / (1 - INIT_OPACITY))),
        sh_dc=rgb_to_sh_dc(colours / 255.0),
        sh_rest=torch.zeros(count, rest, 3),
    )
