"""Shuttle tracking by motion: background difference, blob filtering and a constant-velocity tracker.

Each frame is compared with the per-pixel median of the three frames before it: a small fast
object shows up only where it is now (where it was has been voted out by the median). Blobs of
that difference are kept when small and compact and, when people boxes are given, outside them.
A constant-velocity tracker picks the candidate nearest its prediction inside a gate, refines it
to the contrast-weighted centroid, and drops the track after ``max_gap`` unseen frames; frames
without a measurement are gaps (``None``), never invented positions.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class Candidate:
    """A moving blob: its contrast-weighted centre, area and peak contrast."""

    x: float
    y: float
    area: int
    peak: float


def _median3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.asarray(np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c)))


class ShuttleTracker:
    """Feed frames in order with :meth:`update`; each call returns the shuttle's (x, y) or ``None``."""

    def __init__(self, width: int, height: int, threshold: int = 30, max_gap: int = 5) -> None:
        self.threshold, self.max_gap = threshold, max_gap
        self.min_area, self.max_area = 2, max(60, int(0.0004 * width * height))
        self.min_gate = max(20.0, 0.06 * max(width, height))
        self._history: deque[np.ndarray] = deque(maxlen=3)
        self._pos: np.ndarray | None = None
        self._vel = np.zeros(2)
        self._missed = 0

    def candidates(self, gray: np.ndarray, people: np.ndarray | None = None) -> list[Candidate]:
        """Moving blobs of ``gray`` against the history (none until three frames were seen)."""
        if len(self._history) < 3:
            return []
        contrast = cv2.absdiff(gray, _median3(*self._history))
        mask = (contrast > self.threshold).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        found = []
        for i in range(1, count):
            x, y, w, h, area = stats[i]
            if not self.min_area <= area <= self.max_area or max(w, h) > 4 * max(1, min(w, h)):
                continue
            window = contrast[y : y + h, x : x + w].astype(np.float64) * (labels[y : y + h, x : x + w] == i)
            total = window.sum()
            ys, xs = np.mgrid[y : y + h, x : x + w]
            cx, cy = float((xs * window).sum() / total), float((ys * window).sum() / total)
            if people is not None and len(people) and _inside(people, cx, cy):
                continue
            found.append(Candidate(cx, cy, int(area), float(window.max())))
        return found

    def update(self, frame: np.ndarray, people: np.ndarray | None = None) -> tuple[float, float] | None:
        """The shuttle's position in ``frame`` (BGR or gray), or ``None`` where it is not seen."""
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        found = self.candidates(gray, people)
        self._history.append(gray)
        chosen: Candidate | None = None
        if self._pos is not None:
            steps = self._missed + 1
            predicted = self._pos + self._vel * steps
            gate = max(self.min_gate, 1.5 * float(np.hypot(*self._vel)) * steps)
            dist = [float(np.hypot(c.x - predicted[0], c.y - predicted[1])) for c in found]
            if dist and min(dist) <= gate:
                chosen = found[int(np.argmin(dist))]
        elif found:
            chosen = max(found, key=lambda c: c.peak * c.area)
        if chosen is None:
            self._missed += 1
            if self._missed > self.max_gap:
                self._pos, self._vel, self._missed = None, np.zeros(2), 0
            return None
        now = np.array([chosen.x, chosen.y])
        if self._pos is not None:
            self._vel = (now - self._pos) / (self._missed + 1)
        self._pos, self._missed = now, 0
        return chosen.x, chosen.y


def _inside(boxes: np.ndarray, x: float, y: float) -> bool:
    b = np.asarray(boxes).reshape(-1, 4)
    return bool(((b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])).any())


def shuttle_entries(positions: list[tuple[float, float] | None], frames: list[int], fps: float) -> list[dict[str, Any]]:
    """The ``shuttle`` field: one entry per processed frame (source ``frames``), ``x``/``y`` ``None`` in gaps."""
    out: list[dict[str, Any]] = []
    for frame, pos in zip(frames, positions, strict=True):
        x, y = (round(pos[0], 2), round(pos[1], 2)) if pos is not None else (None, None)
        out.append({"frame": frame, "time": round(frame / fps, 4), "x": x, "y": y, "visible": pos is not None})
    return out
