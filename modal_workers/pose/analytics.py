"""Per-player analytics: distance covered, speed and time in each half of the court.

A player's position is the ground point under them: the mean of the ankles when both are confident,
else the bottom centre of the box. With a court homography positions are in court metres (the net
at 6.7 m splits the halves ``far`` / ``near``); without one they stay in pixels and the halves are
the image's ``top`` / ``bottom``. Positions are smoothed (centred moving average) before summing
steps, so detection jitter does not count as running.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modal_workers.pose.court import COURT_LENGTH_M, to_court

ANKLES = (15, 16)
"""COCO keypoint indices of the left and right ankle."""
KEYPOINT_CONF = 0.5
SMOOTH = 5


def ground_point(box: list[float], keypoints: list[list[float]]) -> tuple[float, float]:
    """Where a person stands in the image: mid-ankles when both are confident, else the box's bottom centre."""
    if len(keypoints) > max(ANKLES):
        ankles = [keypoints[i] for i in ANKLES]
        if all(k[2] >= KEYPOINT_CONF for k in ankles):
            return (ankles[0][0] + ankles[1][0]) / 2, (ankles[0][1] + ankles[1][1]) / 2
    return (box[0] + box[2]) / 2, box[3]


def _smooth(points: np.ndarray) -> np.ndarray:
    if len(points) < 3:
        return points
    k = min(SMOOTH, len(points) - (1 - len(points) % 2))
    pad = k // 2
    # Point reflection at both ends keeps straight-line motion straight (no distance lost at the ends).
    padded = np.concatenate([2 * points[0] - points[pad:0:-1], points, 2 * points[-1] - points[-2 : -pad - 2 : -1]])
    kernel = np.ones(k) / k
    return np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(2)], axis=1)


def player_analytics(
    frames: list[dict[str, Any]], fps: float, homography: Any | None, image_height: int
) -> dict[str, Any]:
    """Distance, speeds and time per half for one player's frame entries (``frame``, ``box``, ``keypoints``)."""
    unit = "m" if homography is not None else "px"
    if not frames:
        return {"unit": unit, "distance": 0.0, "averageSpeed": 0.0, "maxSpeed": 0.0, "timeInHalf": {}}
    image_pts = np.array([ground_point(f["box"], f["keypoints"]) for f in frames], dtype=np.float64)
    pts = to_court(homography, image_pts) if homography is not None else image_pts
    pts = _smooth(pts)
    frame_no = np.array([f["frame"] for f in frames], dtype=np.float64)
    steps = np.hypot(*np.diff(pts, axis=0).T) if len(pts) > 1 else np.zeros(0)
    gaps = np.diff(frame_no) / fps if len(pts) > 1 else np.zeros(0)
    contiguous = gaps <= 0.5  # a player unseen for longer is not assumed to have walked straight
    distance = float(steps[contiguous].sum())
    tracked_s = float(gaps[contiguous].sum())
    speeds = steps[contiguous] / np.maximum(gaps[contiguous], 1e-9)
    if homography is not None:
        halves = np.where(pts[:, 1] < COURT_LENGTH_M / 2, "far", "near")
    else:
        halves = np.where(pts[:, 1] < image_height / 2, "top", "bottom")
    per_frame_s = 1.0 / fps * (np.median(np.diff(frame_no)) if len(frame_no) > 1 else 1.0)
    time_in_half = {str(h): round(float((halves == h).sum() * per_frame_s), 3) for h in sorted(set(halves))}
    return {
        "unit": unit,
        "distance": round(distance, 3),
        "averageSpeed": round(distance / tracked_s, 3) if tracked_s > 0 else 0.0,
        "maxSpeed": round(float(speeds.max()), 3) if len(speeds) else 0.0,
        "speedUnit": f"{unit}/s",
        "timeInHalf": time_in_half,
        "halves": ["far", "near"] if homography is not None else ["top", "bottom"],
        "trackedSeconds": round(tracked_s, 3),
    }
