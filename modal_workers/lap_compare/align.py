"""Lap alignment: banded dynamic time warping on speed profiles, and per-segment time deltas.

Both profiles are z-normalised first (a faster lap has the same *shape* of speed, scaled), then
aligned with DTW (steps right, down, diagonal; cost ``|a_i - b_j|``) inside a Sakoe-Chiba band
around the diagonal of the two lengths (:func:`band_width`). Each DP row is vectorised: with
``a_j = c_j + min(D[i-1, j], D[i-1, j-1])`` and the row's cost prefix sums ``C``,
``D[i, j] = C_j + min_{k ≤ j}(a_k - C_k)`` (one ``np.minimum.accumulate``). Profiles longer than
``MAX_POINTS`` are strided down first, and the path mapped back.

The time delta at a point of the reference lap is ``t_video - t_reference`` of the aligned
frames: negative where the analysed lap is ahead (faster). The reference is cut into ``segments``
equal parts; each segment's delta is the change of that cumulative delta across it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MAX_POINTS = 3000
Array = np.ndarray[Any, Any]


def znorm(values: Array) -> Array:
    """``(x - mean) / std`` (just ``x - mean`` for a flat profile)."""
    x = np.asarray(values, dtype=np.float64)
    std = float(x.std())
    normalised: Array = (x - x.mean()) / (std if std > 1e-9 else 1.0)
    return normalised


def band_width(n: int, m: int, fraction: float = 0.2) -> int:
    """The band half-width: covers the length difference, plus ``fraction`` of the longer profile."""
    return abs(n - m) + max(8, math.ceil(fraction * max(n, m)))


def dtw_path(a: Array, b: Array, band: int | None = None) -> list[tuple[int, int]]:
    """The warping path ``[(i, j), ...]`` from ``(0, 0)`` to ``(n-1, m-1)`` of profiles ``a`` and ``b``."""
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return []
    band = band_width(n, m) if band is None else band
    inf = np.inf
    rows: list[tuple[int, Array]] = []
    previous = np.full(m, inf)
    for i in range(n):
        centre = i * (m - 1) / max(1, n - 1)
        lo, hi = max(0, math.floor(centre - band)), min(m, math.ceil(centre + band) + 1)
        cost = np.abs(a[i] - b[lo:hi])
        if i == 0:
            up, diag = np.full(hi - lo, inf), np.full(hi - lo, inf)
            if lo == 0:
                diag[0] = 0.0
        else:
            up = previous[lo:hi]
            diag = np.concatenate(([previous[lo - 1] if lo > 0 else inf], previous[lo : hi - 1]))
        entry = cost + np.minimum(up, diag)
        cumulative = np.cumsum(cost)
        row = cumulative + np.minimum.accumulate(entry - cumulative)
        rows.append((lo, row))
        previous = np.full(m, inf)
        previous[lo:hi] = row
    return _backtrack(rows, n, m)


def _at(rows: list[tuple[int, Array]], i: int, j: int) -> float:
    if i < 0 or j < 0:
        return math.inf
    lo, row = rows[i]
    return float(row[j - lo]) if lo <= j < lo + len(row) else math.inf


def _backtrack(rows: list[tuple[int, Array]], n: int, m: int) -> list[tuple[int, int]]:
    i, j = n - 1, m - 1
    path = [(i, j)]
    while (i, j) != (0, 0):
        steps = ((i - 1, j - 1), (i - 1, j), (i, j - 1))
        i, j = min(steps, key=lambda s: _at(rows, *s))
        path.append((i, j))
    path.reverse()
    return path


def align(video_speed: Array, reference_speed: Array, fps: float, ref_fps: float, segments: int = 10) -> dict[str, Any]:
    """DTW alignment of two laps' speed profiles: lap time delta, per-segment deltas, the path."""
    a, b = znorm(video_speed), znorm(reference_speed)
    stride = max(1, math.ceil(max(len(a), len(b)) / MAX_POINTS))
    coarse = dtw_path(a[::stride], b[::stride])
    path = [(min(i * stride, len(a) - 1), min(j * stride, len(b) - 1)) for i, j in coarse]
    # For each reference frame: the first video frame aligned to it.
    matched = np.full(len(b), -1, dtype=np.int64)
    for i, j in path:
        if matched[j] < 0:
            matched[j] = i
    known = np.flatnonzero(matched >= 0)
    aligned = np.interp(np.arange(len(b)), known, matched[known]) if len(known) else np.zeros(len(b))
    delta = aligned / fps - np.arange(len(b)) / ref_fps
    bounds = np.linspace(0, len(b), segments + 1).round().astype(int)
    lap_delta = len(a) / fps - len(b) / ref_fps
    cumulative = [float(delta[min(k, len(b) - 1)]) if k < len(b) else lap_delta for k in bounds]
    rows = [
        {
            "index": s,
            "reference_start_s": round(bounds[s] / ref_fps, 4),
            "reference_end_s": round(bounds[s + 1] / ref_fps, 4),
            "delta_s": round(cumulative[s + 1] - cumulative[s], 4),
            "cumulative_delta_s": round(cumulative[s + 1], 4),
        }
        for s in range(segments)
        if bounds[s + 1] > bounds[s]
    ]
    offsets = [i - j for i, j in path]
    return {
        "method": "dtw",
        "normalisation": "z-score",
        "band": band_width(len(a[::stride]), len(b[::stride])) * stride,
        "stride": stride,
        "lap_time_delta_s": round(lap_delta, 4),
        "median_offset_frames": float(np.median(offsets)) if offsets else 0.0,
        "segments": rows,
        "path": [[int(i), int(j)] for i, j in path],
    }
