"""An instant-NGP-style NeRF in plain torch: a multiresolution hash grid, two small MLPs, volume rendering.

:class:`HashGrid` keeps ``levels`` tables of ``2**log2_table`` feature vectors; a point's features at a
level are the trilinear blend of its cell's eight corners, found by direct indexing while the level's
grid fits its table and by the spatial hash (XOR of coordinates × large primes) above. All levels
are looked up at once (one gather). :class:`NerfField` maps the features to density (truncated
exp) and, through 15 more features, RGB (sigmoid; view-independent: product photos are mostly
diffuse). :func:`render_rays` samples each ray (stratified while training) between its entry into
and exit from the scene box ``[-1, 1]³`` and composites: premultiplied RGB and the accumulated
opacity ``1 - transmittance`` (the alpha: 0 where a ray meets nothing).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

PRIMES = (1, 2654435761, 805459861)


@dataclass(frozen=True)
class FieldConfig:
    """Sizes of the grid and MLPs, and samples per ray."""

    levels: int = 16
    features: int = 2
    log2_table: int = 19
    base_resolution: int = 16
    finest_resolution: int = 1024
    hidden: int = 64
    samples: int = 96

    @classmethod
    def for_device(cls, on_cuda: bool) -> FieldConfig:
        """The GPU's full size, or a small one the CPU trains in seconds."""
        if on_cuda:
            return cls()
        return cls(levels=6, log2_table=14, base_resolution=8, finest_resolution=96, hidden=32, samples=32)

    def as_dict(self) -> dict[str, Any]:
        """The config as plain data (stored in checkpoints)."""
        return asdict(self)


class _TruncExp(torch.autograd.Function):
    """exp with its gradient clamped (instant-NGP's density activation)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(-15, 15))


class HashGrid(nn.Module):
    """Multiresolution hash encoding of points in ``[0, 1]³``: ``levels × features`` values a point."""

    resolutions: torch.Tensor
    primes: torch.Tensor
    offsets: torch.Tensor

    def __init__(self, config: FieldConfig) -> None:
        super().__init__()
        self.size = 2**config.log2_table
        growth = math.exp(
            (math.log(config.finest_resolution) - math.log(config.base_resolution)) / max(1, config.levels - 1)
        )
        resolutions = [math.floor(config.base_resolution * growth**level) for level in range(config.levels)]
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.float32), persistent=False)
        self.dense_levels = sum((r + 1) ** 3 <= self.size for r in resolutions)
        self.register_buffer("primes", torch.tensor(PRIMES, dtype=torch.int64), persistent=False)
        self.register_buffer("offsets", torch.arange(config.levels) * self.size, persistent=False)
        table = torch.empty(config.levels * self.size, config.features).uniform_(-1e-4, 1e-4)
        self.table = nn.Parameter(table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features of ``x`` (N, 3) in ``[0, 1]``: (N, levels × features)."""
        res: torch.Tensor = self.resolutions
        scaled = x[:, None, :] * res[None, :, None]  # N, L, 3
        cell = scaled.floor()
        frac = scaled - cell
        low = cell.long()
        both = torch.stack([low, low + 1], -1)  # N, L, 3, 2: each axis' two corner coordinates
        k = self.dense_levels
        parts = []
        if k:  # coarse levels: the grid fits its table, indexed directly
            d = both[:, :k]
            stride = (res[:k].long() + 1)[None, :, None, None, None]
            parts.append(
                d[:, :, 0, :, None, None] + stride * (d[:, :, 1, None, :, None] + stride * d[:, :, 2, None, None, :])
            )
        if k < len(res):  # fine levels: the spatial hash
            h = both[:, k:] * self.primes[None, None, :, None]
            parts.append(
                (h[:, :, 0, :, None, None] ^ h[:, :, 1, None, :, None] ^ h[:, :, 2, None, None, :]) & (self.size - 1)
            )
        index = (torch.cat(parts, 1) + self.offsets[None, :, None, None, None]).flatten(2)  # N, L, 8
        w = torch.stack([1 - frac, frac], -1)  # N, L, 3, 2
        weights = (w[:, :, 0, :, None, None] * w[:, :, 1, None, :, None] * w[:, :, 2, None, None, :]).flatten(2)
        features = self.table[index]  # N, L, 8, F
        return (weights[..., None] * features).sum(2).flatten(1)


class NerfField(nn.Module):
    """Density and colour of points in the scene box ``[-1, 1]³``."""

    def __init__(self, config: FieldConfig) -> None:
        super().__init__()
        self.config = config
        self.grid = HashGrid(config)
        width = config.levels * config.features
        self.density = nn.Sequential(nn.Linear(width, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 16))
        self.colour = nn.Sequential(
            nn.Linear(15, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, 3),
        )  # fmt: skip

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sigma (N,), rgb (N, 3))`` at ``points`` (N, 3)."""
        features = self.density(self.grid(((points + 1) / 2).clamp(0, 1 - 1e-6)))
        sigma = _TruncExp.apply(features[:, 0] - 1.0)
        return sigma, torch.sigmoid(self.colour(features[:, 1:]))


def box_span(origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each ray enters and leaves ``[-1, 1]³`` (``near >= far``: it misses)."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0, t1 = (-1 - origins) * inv, (1 - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far


def render_rays(
    field: NerfField, origins: torch.Tensor, dirs: torch.Tensor, *, stratified: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(premultiplied rgb (N, 3), alpha (N,))`` of rays ``origins + t · dirs``."""
    samples = field.config.samples
    near, far = box_span(origins, dirs)
    hit = far > near
    far = torch.where(hit, far, near + 1e-3)
    steps = (torch.arange(samples, device=origins.device, dtype=origins.dtype) + 0.5) / samples
    if stratified:
        steps = steps + (torch.rand(len(origins), samples, device=origins.device) - 0.5) / samples
    z = near[:, None] + (far - near)[:, None] * steps  # N, S
    delta = ((far - near) / samples)[:, None] * dirs.norm(dim=-1, keepdim=True)
    points = origins[:, None, :] + dirs[:, None, :] * z[..., None]
    sigma, rgb = field(points.reshape(-1, 3))
    sigma = sigma.reshape(len(origins), samples) * hit[:, None]
    alpha = 1 - torch.exp(-sigma * delta)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-10], -1), -1)[:, :-1]
    weights = alpha * transmittance
    colour = (weights[..., None] * rgb.reshape(len(origins), samples, 3)).sum(1)
    return colour, weights.sum(1)
