"""The standard 3D Gaussian Splatting PLY file (what common splat viewers open), written with plyfile.

One ``vertex`` element, binary little-endian, every property ``float``, in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 … f_rest_{3(K-1)-1}  opacity  scale_0..2  rot_0..3

``opacity`` is the logit, ``scale_*`` are log scales, ``rot_*`` the quaternion **w first**, normals
are zero; ``f_rest`` is channel-major as the reference implementation writes it (all of red's
higher-order coefficients, then green's, then blue's), K = (degree + 1)².

API: :func:`ply_properties` (degree → property names), :func:`to_ply_bytes` / :func:`write_ply`
(:class:`~modal_workers.splat.model.Gaussians` → file), :func:`read_ply` (bytes or path →
``Gaussians`` on the CPU, float32; the SH degree follows from the number of ``f_rest`` properties).
A file that is not such a PLY raises :class:`~modal_workers.runtime.worker_runtime.PermanentError` ``invalid_ply``.
"""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyParseError

from modal_workers.runtime.worker_runtime import PermanentError
from modal_workers.splat.model import Gaussians


def ply_properties(sh_degree: int) -> list[str]:
    """The vertex property names for SH degree ``sh_degree``, in file order."""
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(rest)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def _columns(g: Gaussians) -> np.ndarray:
    """The (N, P) float32 table of ``g`` in :func:`ply_properties` order."""

    def cpu(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float32).numpy().reshape(g.count, math.prod(t.shape[1:]))

    rest = g.sh_rest.detach().transpose(1, 2)  # (N, 3, K-1): channel-major
    parts = [
        cpu(g.means),
        np.zeros((g.count, 3), np.float32),
        cpu(g.sh_dc),
        cpu(rest),
        cpu(g.opacity_logits),
        cpu(g.log_scales),
        cpu(g.quats),
    ]
    return np.concatenate(parts, axis=1)


def to_ply_bytes(g: Gaussians) -> bytes:
    """``g`` as a 3DGS PLY file."""
    names = ply_properties(g.sh_degree)
    table = np.empty(g.count, dtype=[(name, "<f4") for name in names])
    columns = _columns(g)
    for i, name in enumerate(names):
        table[name] = columns[:, i]
    out = io.BytesIO()
    PlyData([PlyElement.describe(table, "vertex")], byte_order="<").write(out)
    return out.getvalue()


def write_ply(g: Gaussians, path: str | Path) -> Path:
    """Write ``g`` to ``path`` (via a temporary file in the same folder, then a rename)."""
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(to_ply_bytes(g))
    partial.replace(target)
    return target


def _sh_degree(names: set[str]) -> int:
    rest = sum(1 for n in names if n.startswith("f_rest_"))
    for degree in range(4):
        if rest == 3 * ((degree + 1) ** 2 - 1):
            return degree
    raise PermanentError("invalid_ply", f"{rest} f_rest properties match no SH degree from 0 to 3")


def read_ply(source: bytes | str | Path) -> Gaussians:
    """The Gaussians of a 3DGS PLY (``bytes`` are the file's content)."""
    try:
        data = PlyData.read(io.BytesIO(source) if isinstance(source, bytes) else str(source))
        vertex = data["vertex"]
    except (PlyParseError, KeyError, ValueError, EOFError, struct.error) as exc:
        raise PermanentError("invalid_ply", f"not a readable PLY with a vertex element: {exc}") from exc
    names = {p.name for p in vertex.properties}
    degree = _sh_degree(names)
    missing = [n for n in ply_properties(degree) if n not in names and n not in ("nx", "ny", "nz")]
    if missing:
        raise PermanentError("invalid_ply", f"the vertex element lacks {', '.join(missing[:5])}")

    def stack(*cols: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(vertex[c], dtype=np.float32) for c in cols], axis=1))

    count, k_rest = len(vertex.data), (degree + 1) ** 2 - 1
    rest = stack(*(f"f_rest_{i}" for i in range(3 * k_rest))) if k_rest else torch.zeros(count, 0)
    return Gaussians(
        means=stack("x", "y", "z"),
        log_scales=stack("scale_0", "scale_1", "scale_2"),
        quats=stack("rot_0", "rot_1", "rot_2", "rot_3"),
        opacity_logits=stack("opacity")[:, 0],
        sh_dc=stack("f_dc_0", "f_dc_1", "f_dc_2"),
        sh_rest=rest.reshape(count, 3, k_rest).transpose(1, 2).contiguous(),
    )
