"""Differentiable rasterization of 3D Gaussians: pure torch (CPU, tests) or gsplat (CUDA only).

API:

* :func:`rasterize` (:class:`~modal_workers.splat.model.Gaussians`, world→camera ``viewmat`` 4 × 4,
  ``K`` 3 × 3, width, height) → :class:`RenderOutput`: ``image`` (H, W, 3), ``alpha`` (H, W),
  ``means2d`` (the projected centres; after ``backward()`` its ``.grad`` is the view-space gradient
  that densification accumulates) and ``visible`` (N,). ``backend``: ``"tiles"`` (pure torch,
  ``tile`` × ``tile`` pixel tiles, σ by batched matrix products), ``"dense"`` (pure torch, every
  pixel against every visible Gaussian with σ from the pixel offsets: the simple reference),
  ``"gsplat"`` (``gsplat.rasterization``), or ``"auto"``: gsplat when the tensors are on CUDA, else
  tiles. gsplat is imported and called only when ``torch.cuda.is_available()``: without CUDA it
  would try to JIT-compile its kernels. Compositing is :mod:`modal_workers.splat.composite`.
* :func:`project`: the EWA projection, written to match gsplat's ``_fully_fused_projection``
  (pinhole, ``eps2d`` added to the 2D covariance, radius 3.33 σ): means2d, cov2d, conics, depths, radii.
* :func:`sh_colors`: view-dependent colours, SH degree 0-3 (3DGS / gsplat basis), + 0.5, clamped at 0.

"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from modal_workers.splat.composite import Projection, composite_dense, composite_tiles
from modal_workers.splat.model import Gaussians

Backend = Literal["auto", "tiles", "dense", "gsplat"]
EPS2D = 0.3
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


@dataclass(frozen=True)
class RenderOutput:
    """One rendered view."""

    image: Tensor
    alpha: Tensor
    means2d: Tensor
    visible: Tensor


def covariances(quats: Tensor, scales: Tensor) -> Tensor:
    """World-space 3 × 3 covariances ``R S Sᵀ Rᵀ`` from quaternions (w first) and scales."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
        (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
        (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)),
    ]
    rot = torch.stack([torch.stack(row, -1) for row in rows], -2)
    m = rot * scales[:, None, :]
    return m @ m.transpose(1, 2)


def project(
    means: Tensor,
    covars: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = EPS2D,
) -> Projection:
    """Project world-space Gaussians (means (N, 3), covariances (N, 3, 3)) into a pinhole camera."""
    rot, trans = viewmat[:3, :3], viewmat[:3, 3]
    mc = means @ rot.T + trans
    cc = rot @ covars @ rot.T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    in_depth = (mc[:, 2] > near) & (mc[:, 2] < far)
    tz = torch.where(in_depth, mc[:, 2], torch.ones_like(mc[:, 2]))  # no inf/NaN gradients from culled ones
    lim_x = (0.3 * 0.5 * width / fx, (width - cx) / fx, cx / fx)
    lim_y = (0.3 * 0.5 * height / fy, (height - cy) / fy, cy / fy)
    tx = tz * (mc[:, 0] / tz).clamp(-(lim_x[2] + lim_x[0]), lim_x[1] + lim_x[0])
    ty = tz * (mc[:, 1] / tz).clamp(-(lim_y[2] + lim_y[0]), lim_y[1] + lim_y[0])
    zero = torch.zeros_like(tz)
    jac = torch.stack([fx / tz, zero, -fx * tx / tz**2, zero, fy / tz, -fy * ty / tz**2], -1).reshape(-1, 2, 3)
    cov2d = jac @ cc @ jac.transpose(1, 2)
    means2d = torch.stack([fx * mc[:, 0] / tz + cx, fy * mc[:, 1] / tz + cy], -1)
    blurred = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    det = blurred[:, 0, 0] * blurred[:, 1, 1] - blurred[:, 0, 1] * blurred[:, 1, 0]
    safe = det.clamp(min=1e-10)
    conics = torch.stack(
        [blurred[:, 1, 1] / safe, -0.5 * (blurred[:, 0, 1] + blurred[:, 1, 0]) / safe, blurred[:, 0, 0] / safe], -1
    )
    with torch.no_grad():
        radii = torch.ceil(3.33 * torch.stack([blurred[:, 0, 0], blurred[:, 1, 1]], -1).clamp(min=0).sqrt())
        size = torch.tensor([width, height], device=means.device)
        inside = ((means2d + radii > 0) & (means2d - radii < size)).all(-1)
        radii = radii * (in_depth & (det > 0) & inside)[:, None]
    return Projection(means2d, cov2d, conics, mc[:, 2], radii.int())


def sh_colors(sh: Tensor, dirs: Tensor, degree: int) -> Tensor:
    """RGB (N, 3) of SH coefficients (N, K, 3) seen along ``dirs`` (N, 3): SH + 0.5, clamped at 0."""
    out = 0.28209479177387814 * sh[:, 0]
    if degree > 0:
        x, y, z = (c[:, None] for c in F.normalize(dirs, dim=-1).unbind(-1))
        out = out - SH_C1 * y * sh[:, 1] + SH_C1 * z * sh[:, 2] - SH_C1 * x * sh[:, 3]
        if degree > 1:
            xx, yy, zz = x * x, y * y, z * z
            bases2 = (x * y, y * z, 2 * zz - xx - yy, x * z, xx - yy)
            out = out + sum(c * b * sh[:, 4 + i] for i, (c, b) in enumerate(zip(SH_C2, bases2, strict=True)))
            if degree > 2:
                bases3 = (
                    y * (3 * xx - yy),
                    x * y * z,
                    y * (4 * zz - xx - yy),
                    z * (2 * zz - 3 * xx - 3 * yy),
                    x * (4 * zz - xx - yy),
                    z * (xx - yy),
                    x * (xx - 3 * yy),
                )
                out = out + sum(c * b * sh[:, 9 + i] for i, (c, b) in enumerate(zip(SH_C3, bases3, strict=True)))
    return (out + 0.5).clamp(min=0.0)


def _rasterize_torch(
    g: Gaussians,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    sh_degree: int,
    background: Tensor,
    tile: int,
    near: float,
) -> RenderOutput:
    proj = project(g.means, covariances(g.quats, g.log_scales.exp()), viewmat, K, width, height, near)
    if proj.means2d.requires_grad:
        proj.means2d.retain_grad()
    campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
    colors = sh_colors(g.sh[:, : (sh_degree + 1) ** 2], g.means - campos, sh_degree)
    visible = (proj.radii > 0).all(-1)
    opacities = torch.sigmoid(g.opacity_logits)
    if tile:
        image, alpha = composite_tiles(proj, opacities, colors, visible, width, height, tile, background)
    else:
        image, alpha = composite_dense(proj, opacities, colors, visible, width, height, background)
    return RenderOutput(image, alpha, proj.means2d, visible)


def _rasterize_gsplat(
    g: Gaussians,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    sh_degree: int,
    background: Tensor,
    near: float,
) -> RenderOutput:
    from gsplat import rasterization

    renders, alphas, meta = rasterization(
        g.means,
        g.quats,
        g.log_scales.exp(),
        torch.sigmoid(g.opacity_logits),
        g.sh[:, : (sh_degree + 1) ** 2],
        viewmat[None],
        K[None],
        width,
        height,
        near_plane=near,
        sh_degree=sh_degree,
        packed=False,
        backgrounds=background[None],
    )
    means2d = meta["means2d"]
    if means2d.requires_grad:
        means2d.retain_grad()
    visible = (meta["radii"].reshape(g.count, -1) > 0).all(-1)
    return RenderOutput(renders[0], alphas[0, ..., 0], means2d, visible)


def rasterize(
    g: Gaussians,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int = 0,
    background: Tensor | None = None,
    backend: Backend = "auto",
    tile: int = 8,
    near: float = 0.01,
) -> RenderOutput:
    """Render ``g`` into a ``width`` × ``height`` pinhole view (see the module docstring)."""
    sh_degree = min(sh_degree, g.sh_degree)
    bg = background if background is not None else torch.zeros(3, device=g.means.device)
    bg = bg.to(g.means.device, g.means.dtype)
    on_cuda = g.means.is_cuda and torch.cuda.is_available()
    if backend == "gsplat" and not on_cuda:
        raise ValueError("the gsplat backend needs CUDA tensors and a CUDA device")
    if backend == "gsplat" or (backend == "auto" and on_cuda):
        return _rasterize_gsplat(g, viewmat, K, width, height, sh_degree, bg, near)
    return _rasterize_torch(g, viewmat, K, width, height, sh_degree, bg, 0 if backend == "dense" else tile, near)
