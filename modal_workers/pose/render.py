"""Drawing of the processed video: court lines, skeletons with player ids, and the shuttle's trail."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

SKELETON = (
    (5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16), (0, 1), (0, 2), (1, 3), (2, 4),
)  # fmt: skip
"""COCO-17 limbs as keypoint index pairs."""
KEYPOINT_CONF = 0.3


@dataclass
class Overlay:
    """What to draw on one frame."""

    people: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)
    """(id, box xyxy, keypoints (K, 3))."""
    trail: list[tuple[float, float] | None] = field(default_factory=list)
    court: dict[str, Any] | None = None


def colour(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per id."""
    hue = (track_id * 47) % 180
    bgr = cv2.cvtColor(np.array([[[hue, 220, 255]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw(frame: np.ndarray, overlay: Overlay) -> np.ndarray:
    """``frame`` with ``overlay`` drawn on it (in place; returned for chaining)."""
    court = overlay.court
    if court and court.get("lines"):
        for ln in court["lines"]:
            p1, p2 = (round(ln["x1"]), round(ln["y1"])), (round(ln["x2"]), round(ln["y2"]))
            cv2.line(frame, p1, p2, (255, 200, 0), 1, cv2.LINE_AA)
    if court and court.get("corners"):
        for c in court["corners"]:
            cv2.circle(frame, (round(c["x"]), round(c["y"])), 4, (0, 200, 255), -1, cv2.LINE_AA)
    for track_id, box, kpts in overlay.people:
        col = colour(track_id)
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(frame, (x1, y1), (x2, y2), col, 1)
        cv2.putText(frame, f"#{track_id}", (x1, max(10, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, col, 1)
        for a, b in SKELETON:
            if max(a, b) < len(kpts) and kpts[a, 2] >= KEYPOINT_CONF and kpts[b, 2] >= KEYPOINT_CONF:
                pa, pb = (
                    (round(float(kpts[a, 0])), round(float(kpts[a, 1]))),
                    (
                        round(float(kpts[b, 0])),
                        round(float(kpts[b, 1])),
                    ),
                )
                cv2.line(frame, pa, pb, col, 2, cv2.LINE_AA)
        for x, y, c in kpts:
            if c >= KEYPOINT_CONF:
                cv2.circle(frame, (round(float(x)), round(float(y))), 2, (255, 255, 255), -1)
    points = [p for p in overlay.trail if p is not None]
    for i in range(1, len(points)):
        p, q = points[i - 1], points[i]
        cv2.line(frame, (round(p[0]), round(p[1])), (round(q[0]), round(q[1])), (0, 255, 255), 2, cv2.LINE_AA)
    if overlay.trail and overlay.trail[-1] is not None:
        x, y = overlay.trail[-1]
        cv2.circle(frame, (round(x), round(y)), 5, (0, 0, 255), 2, cv2.LINE_AA)
    return frame
