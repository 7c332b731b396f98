"""LeRobot's feature statistics (``meta/stats.json`` and the episodes' ``stats/…`` columns).

Per feature: ``min``, ``max``, ``mean``, ``std``, ``count`` and the quantiles ``q01`` … ``q99``,
reduced over the frames. A vector feature keeps its length (a scalar one is a list of one); a
camera's are per channel with shape ``(3, 1, 1)``, in [0, 1] (pixels / 255), computed over a sample
of at most :data:`IMAGE_SAMPLES` frames each shrunk to at most :data:`IMAGE_SIDE` pixels a side,
as LeRobot samples them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
IMAGE_SAMPLES = 100
IMAGE_SIDE = 150


def feature_stats(values: np.ndarray) -> dict[str, Any]:
    """Statistics of ``values`` (N × D, or N for a scalar feature) over its first axis, as lists."""
    data = np.asarray(values, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    return _stats(data, axis=0, count=len(data))


def image_stats(samples: list[np.ndarray]) -> dict[str, Any]:
    """Per-channel statistics of RGB ``uint8`` samples (each H × W × 3, one size), shape (3, 1, 1)."""
    stacked = np.stack(samples).astype(np.float64) / 255.0  # N × H × W × 3
    channels_first = stacked.transpose(0, 3, 1, 2)  # N × 3 × H × W
    return _stats(channels_first, axis=(0, 2, 3), count=len(samples), keep=True)


def _stats(data: np.ndarray, *, axis: int | tuple[int, ...], count: int, keep: bool = False) -> dict[str, Any]:
    def reduce(value: np.ndarray) -> list[Any]:
        out = value[0] if keep else value  # keepdims leaves the reduced first axis
        return list(np.asarray(out).tolist())

    stats = {
        "min": reduce(data.min(axis=axis, keepdims=keep)),
        "max": reduce(data.max(axis=axis, keepdims=keep)),
        "mean": reduce(data.mean(axis=axis, keepdims=keep)),
        "std": reduce(data.std(axis=axis, keepdims=keep)),
        "count": [count],
    }
    for name, q in QUANTILES.items():
        stats[name] = reduce(np.quantile(data, q, axis=axis, keepdims=keep))
    return stats


def shrink(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` shrunk to at most :data:`IMAGE_SIDE` pixels a side (a stats sample)."""
    import cv2

    height, width = rgb.shape[:2]
    scale = IMAGE_SIDE / max(height, width)
    if scale >= 1:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


def sample_every(total: int) -> int:
    """The stride that takes at most :data:`IMAGE_SAMPLES` of ``total`` frames."""
    return max(1, -(-total // IMAGE_SAMPLES))
