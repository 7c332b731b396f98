"""Dense optical flow per frame pair, its per-frame metrics, and the overlay drawing.

Units are pixels of the processed (downscaled) stream. For each frame (the first has no flow and
gets zeros) :func:`frame_metrics` gives:

* ``mean_magnitude``: mean flow length over *moving* pixels (length ≥ ``MOVING_PX``), px/frame;
* ``direction_rad``: the magnitude-weighted mean direction of the moving pixels, radians in
  ``(-π, π]``, image axes (0 = to the right, +π/2 = down);
* ``motion_energy``: mean squared flow length over the whole frame, px²/frame²;
* ``moving_fraction``: share of moving pixels;
* ``speed``: ``mean_magnitude × fps`` (px/s), the speed profile used for lap alignment.
"""

from __future__ import annotations

import math
import queue
import threading
from typing import Any, Literal

import cv2
import numpy as np

from modal_workers.media.video_out import Renditions

MOVING_PX = 0.5
"""Flow shorter than this (px/frame) counts as still (noise, static background)."""

Array = np.ndarray[Any, Any]


class FlowEngine:
    """Farnebäck or DIS dense flow on grayscale frames."""

    def __init__(self, method: Literal["farneback", "dis"]) -> None:
        self.method = method
        self._dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None

    def __call__(self, previous: Array, current: Array) -> Array:
        """The flow field (H×W×2, float32) from ``previous`` to ``current`` (both gray uint8)."""
        if self._dis is not None:
            return np.asarray(self._dis.calc(previous, current, None))  # type: ignore[call-overload]
        return np.asarray(
            cv2.calcOpticalFlowFarneback(previous, current, None, 0.5, 3, 15, 3, 5, 1.2, 0)  # type: ignore[call-overload]
        )


def frame_metrics(flow: Array | None, fps: float) -> dict[str, float]:
    """The metrics of one frame's flow (zeros for ``None``, the first frame)."""
    if flow is None:
        return {"mean_magnitude": 0.0, "direction_rad": 0.0, "motion_energy": 0.0, "moving_fraction": 0.0, "speed": 0.0}
    fx, fy = flow[..., 0], flow[..., 1]
    magnitude = np.hypot(fx, fy)
    moving = magnitude >= MOVING_PX
    count = int(moving.sum())
    mean_magnitude = float(magnitude[moving].mean()) if count else 0.0
    direction = float(math.atan2(float(fy[moving].sum()), float(fx[moving].sum()))) if count else 0.0
    return {
        "mean_magnitude": round(mean_magnitude, 5),
        "direction_rad": round(direction, 5),
        "motion_energy": round(float(np.mean(magnitude * magnitude)), 5),
        "moving_fraction": round(count / magnitude.size, 5),
        "speed": round(mean_magnitude * fps, 4),
    }


def draw_overlay(image: Array, flow: Array | None, step: int = 16) -> Array:
    """``image`` with the flow blended in as colour (hue = direction, value = length) and arrows."""
    if flow is None:
        return image
    magnitude, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1])
    hsv = np.zeros_like(image)
    hsv[..., 0] = (angle * 90 / np.pi).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(magnitude * 32, 0, 255).astype(np.uint8)
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    out = cv2.addWeighted(image, 0.6, colour, 0.8, 0)
    h, w = image.shape[:2]
    ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step].reshape(2, -1)
    vectors = flow[ys, xs]
    keep = np.hypot(vectors[:, 0], vectors[:, 1]) >= MOVING_PX
    if keep.any():
        tails = np.stack([xs[keep], ys[keep]], axis=1).astype(np.float32)
        tips = tails + vectors[keep] * 2
        back = (tails - tips) * 0.3  # the two barbs: the shaft turned ±30° and shortened
        cos, sin = math.cos(math.pi / 6), math.sin(math.pi / 6)
        barbs = [
            np.stack([back[:, 0] * cos - sign * back[:, 1] * sin, sign * back[:, 0] * sin + back[:, 1] * cos], 1)
            for sign in (1, -1)
        ]
        lines = [np.stack([tails, tips], 1), np.stack([tips, tips + barbs[0]], 1), np.stack([tips, tips + barbs[1]], 1)]
        segments = np.concatenate(lines).round().astype(np.int32)
        cv2.polylines(out, list(segments), False, (255, 255, 255), 1)
    return out


def summarize(frames: list[dict[str, float]], fps: float) -> dict[str, float]:
    """Lap-level figures: frame count, duration, mean speed and magnitude (over moving frames)."""
    moving = [f for f in frames if f["moving_fraction"] > 0]
    return {
        "frames": len(frames),
        "fps": round(fps, 4),
        "duration_s": round(len(frames) / fps, 4) if fps else 0.0,
        "mean_speed": round(float(np.mean([f["speed"] for f in moving])) if moving else 0.0, 4),
        "mean_magnitude": round(float(np.mean([f["mean_magnitude"] for f in moving])) if moving else 0.0, 5),
        "mean_motion_energy": round(float(np.mean([f["motion_energy"] for f in frames])) if frames else 0.0, 5),
    }


class OverlayWriter:
    """Draws and encodes overlay frames in a thread fed by a bounded queue, overlapping the flow.

    Each frame goes to each of ``videos`` (the main file and its WebM preview, if any).
    """

    def __init__(self, videos: Renditions) -> None:
        self._writer = videos
        self.frames = 0
        self._queue: queue.Queue[tuple[Array, Array | None] | None] = queue.Queue(4)
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="overlay-writer", daemon=True)
        self._thread.start()

    def write(self, image: Array, flow: Array | None) -> None:
        """Queue one frame (waits while the queue is full; raises the writer's error, if any)."""
        if self._error is not None:
            raise self._error
        self._queue.put((image, flow), timeout=60)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write(draw_overlay(*item))
                    self.frames += 1
                except Exception as exc:  # noqa: BLE001 - raised in the caller's thread
                    self._error = exc

    def close(self) -> None:
        """Finish the queued frames and the file; raises the writer's error, if any."""
        self._queue.put(None, timeout=60)
        self._thread.join(60)
        self._writer.release()
        if self._error is not None:
            raise self._error
