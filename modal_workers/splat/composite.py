"""Alpha compositing of projected Gaussians in pure torch (the CPU path of :mod:`modal_workers.splat.raster`).

Both functions take a :class:`Projection` (from :func:`~modal_workers.splat.raster.project`), per
Gaussian opacities and colours, and return the image (H, W, 3) and accumulated alpha (H, W),
differentiable by autograd. They follow gsplat: pixel centres at +0.5, ``α = min(0.999, o · exp(-σ))``
with ``σ = ½ dᵀ Σ⁻¹ d``, contributions with α < 1/255 skipped, front to back by camera depth, then
the background weighted by the light left.

* :func:`composite_tiles`: per ``tile`` × ``tile`` tile only the Gaussians whose 3.33 σ box meets it;
  σ for a whole tile group is one batched matrix product (see :func:`_blend`).
* :func:`composite_dense`: every pixel against every visible Gaussian, σ from the pixel offsets:
  the simple reference (and the benchmark's baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
BUCKETS = 8
"""Tile groups blended separately (see :func:`composite_tiles`)."""
PAD_EXPONENT = 1e4
"""The exponent given to padding entries: exp(-1e4) = 0."""


@dataclass(frozen=True)
class Projection:
    """Per-Gaussian screen-space quantities; ``radii`` (N, 2) is zero for culled Gaussians."""

    means2d: Tensor
    cov2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor


def _tile_lists(means2d: Tensor, radii: Tensor, order: Tensor, width: int, height: int, tile: int) -> Tensor:
    """Per tile, the depth-ordered ids (from ``order``) of the Gaussians whose box meets it; -1 pads."""
    with torch.no_grad():
        m, r = means2d[order].detach(), radii[order].to(means2d.dtype)
        x0 = torch.arange(0, width, tile, device=m.device, dtype=m.dtype)
        y0 = torch.arange(0, height, tile, device=m.device, dtype=m.dtype)
        over_x = (m[None, :, 0] + r[None, :, 0] > x0[:, None]) & (m[None, :, 0] - r[None, :, 0] < x0[:, None] + tile)
        over_y = (m[None, :, 1] + r[None, :, 1] > y0[:, None]) & (m[None, :, 1] - r[None, :, 1] < y0[:, None] + tile)
        overlap = (over_y[:, None, :] & over_x[None, :, :]).reshape(len(y0) * len(x0), order.numel())
        slot = overlap.cumsum(1) - 1  # each overlapping Gaussian's place in its tile's list
        ids = torch.full(
            (overlap.shape[0], int(slot[:, -1].max()) + 1 if order.numel() else 0),
            -1,
            dtype=order.dtype,
            device=order.device,
        )
        tile_ids, column = overlap.nonzero(as_tuple=True)
        ids[tile_ids, slot[tile_ids, column]] = order[column]
        return ids


def _blend(
    proj: Projection,
    opacities: Tensor,
    colors: Tensor,
    ids: Tensor,
    origins: Tensor,
    offsets: Tensor,
    background: Tensor,
) -> tuple[Tensor, Tensor]:
    """Front-to-back blending of tiles: ``ids`` (T, K) depth-ordered (-1 pads), tile centres ``origins``
    (T, 2), pixel centres relative to them ``offsets`` (P, 2).

    The exponent ``σ - log o`` of every (tile, pixel, Gaussian) comes from one batched matrix product:
    σ is a quadratic in the pixel's offset, so each Gaussian contributes six coefficients per tile
    against the pixel features ``[u², v², uv, u, v, 1]`` (tile-centred, so the terms stay small).
    """
    used, safe = ids >= 0, ids.clamp(min=0)
    a, b, c = proj.conics[safe].unbind(-1)  # (T, K)
    mx, my = (proj.means2d[safe] - origins[:, None, :]).unbind(-1)
    const = 0.5 * a * mx * mx + 0.5 * c * my * my + b * mx * my - torch.log(opacities[safe].clamp(min=1e-12))
    const = torch.where(used, const, torch.full_like(const, PAD_EXPONENT))
    coeffs = torch.stack([0.5 * a, 0.5 * c, b, -(a * mx + b * my), -(c * my + b * mx), const], dim=1)  # (T, 6, K)
    u, v = offsets.unbind(-1)
    features = torch.stack([u * u, v * v, u * v, u, v, torch.ones_like(u)], dim=-1)  # (P, 6)
    raw = torch.exp(-(features @ coeffs))  # (T, P, K): o · exp(-σ)
    alpha = raw.clamp(max=ALPHA_MAX) * (raw >= ALPHA_MIN)
    trans = torch.cumprod(1.0 - alpha, dim=-1)
    weights = alpha * torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)
    rgba = weights @ torch.cat([colors[safe], torch.ones_like(a)[..., None]], dim=-1)  # (T, P, 4)
    acc = rgba[..., 3]
    return rgba[..., :3] + (1.0 - acc)[..., None] * background, acc


def composite_tiles(
    proj: Projection,
    opacities: Tensor,
    colors: Tensor,
    visible: Tensor,
    width: int,
    height: int,
    tile: int,
    background: Tensor,
) -> tuple[Tensor, Tensor]:
    """Alpha-composite the visible Gaussians, tile by tile.

    Tiles are blended in ``BUCKETS`` groups of similar Gaussian counts, each padded only to its own
    longest list: a crowded tile does not make every other tile as expensive.
    """
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    order = visible.nonzero().squeeze(1)
    order = order[torch.argsort(proj.depths[order].detach())]
    ids = _tile_lists(proj.means2d, proj.radii, order, width, height, tile)  # (T, K)
    dev, dtype = proj.means2d.device, proj.means2d.dtype
    py, px = torch.meshgrid(torch.arange(tile, device=dev), torch.arange(tile, device=dev), indexing="ij")
    offsets = torch.stack([px.reshape(-1), py.reshape(-1)], -1).to(dtype) + 0.5 - tile / 2.0  # (P, 2)
    oy = torch.arange(tiles_y, device=dev).repeat_interleave(tiles_x) * tile
    ox = torch.arange(tiles_x, device=dev).repeat(tiles_y) * tile
    origins = torch.stack([ox, oy], -1).to(dtype) + tile / 2.0  # (T, 2) tile centres
    counts = (ids >= 0).sum(1)
    by_count = torch.argsort(counts)
    parts = []
    for group in by_count.chunk(min(BUCKETS, len(by_count))):
        longest = int(counts[group].max())
        parts.append(_blend(proj, opacities, colors, ids[group, :longest], origins[group], offsets, background))
    back = torch.argsort(by_count)
    rgb, acc = torch.cat([p[0] for p in parts])[back], torch.cat([p[1] for p in parts])[back]
    image = rgb.reshape(tiles_y, tiles_x, tile, tile, 3).permute(0, 2, 1, 3, 4).reshape(tiles_y * tile, -1, 3)
    alpha_img = acc.reshape(tiles_y, tiles_x, tile, tile).permute(0, 2, 1, 3).reshape(tiles_y * tile, -1)
    return image[:height, :width], alpha_img[:height, :width]


def composite_dense(
    proj: Projection,
    opacities: Tensor,
    colors: Tensor,
    visible: Tensor,
    width: int,
    height: int,
    background: Tensor,
) -> tuple[Tensor, Tensor]:
    """The plain reference: every pixel against every visible Gaussian, σ from the pixel's offset."""
    order = visible.nonzero().squeeze(1)
    order = order[torch.argsort(proj.depths[order].detach())]
    mu, con, opa, col = proj.means2d[order], proj.conics[order], opacities[order], colors[order]
    py, px = torch.meshgrid(
        torch.arange(height, device=mu.device), torch.arange(width, device=mu.device), indexing="ij"
    )
    dx = px.reshape(-1, 1).to(mu.dtype) + 0.5 - mu[None, :, 0]  # (P, K)
    dy = py.reshape(-1, 1).to(mu.dtype) + 0.5 - mu[None, :, 1]
    sigma = 0.5 * (con[None, :, 0] * dx * dx + con[None, :, 2] * dy * dy) + con[None, :, 1] * dx * dy
    alpha = (opa[None, :] * torch.exp(-sigma)).clamp(max=ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    trans = torch.cumprod(1.0 - alpha, dim=-1)
    weights = alpha * torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], dim=-1)
    acc = weights.sum(-1)
    rgb = weights @ col + (1.0 - acc)[:, None] * background
    return rgb.reshape(height, width, 3), acc.reshape(height, width)
