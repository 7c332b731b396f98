"""Per-frame accumulation of the pose workload's findings, and the result in the Badminton tracker's shape.

:class:`Collector` takes each processed frame with its people detections (in frame order): it
assigns track ids, follows the shuttle, looks for the court (on the first frame, then every two
seconds until found), records everything per frame and returns what to draw on that frame.
:meth:`Collector.result` builds ``results.json``; :func:`summary` the smaller job result.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from modal_workers.pose.analytics import player_analytics
from modal_workers.pose.court import detect_court
from modal_workers.pose.infer import Detections, PersonTracker, untracked_ids
from modal_workers.pose.render import Overlay
from modal_workers.pose.shuttle import ShuttleTracker, shuttle_entries

TRAIL = 12
"""Shuttle positions drawn behind the current one."""
COURT_RETRIES = 10


def _r(values: np.ndarray) -> list[Any]:
    return np.round(values.astype(np.float64), 2).tolist()  # type: ignore[no-any-return]


class Collector:
    """Accumulates players, shuttle and court over a video's processed frames."""

    def __init__(self, width: int, height: int, fps: float, track: bool = True) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.tracker = PersonTracker() if track else None
        self.shuttle = ShuttleTracker(width, height)
        self.positions: list[tuple[float, float] | None] = []
        self.frames: list[int] = []
        self.players: dict[int, list[dict[str, Any]]] = {}
        self.court: dict[str, Any] | None = None
        self._court_tries, self._next_court = 0, 0
        self._trail: deque[tuple[float, float] | None] = deque(maxlen=TRAIL)

    def add(self, index: int, time_s: float, image: np.ndarray, det: Detections) -> Overlay:
        """Record frame ``index`` (source numbering) with its detections; what to draw on it."""
        if self.tracker is not None:
            det, ids = self.tracker.update(det, image)
        else:
            ids = untracked_ids(det)
        searching = self.court is None or not self.court["found"]
        if searching and index >= self._next_court and self._court_tries < COURT_RETRIES:
            self._court_tries += 1
            self._next_court = index + max(1, round(2 * self.fps))
            found = detect_court(image)
            if self.court is None or found["found"]:
                self.court = {**found, "frame": index}
        position = self.shuttle.update(image, det.boxes)
        self.positions.append(position)
        self._trail.append(position)
        self.frames.append(index)
        people = []
        for track_id, box, score, kpts in zip(ids.tolist(), det.boxes, det.scores, det.keypoints, strict=True):
            entry = {"frame": index, "time": round(time_s, 4), "box": _r(box),
                     "confidence": round(float(score), 4), "keypoints": _r(kpts)}  # fmt: skip
            self.players.setdefault(int(track_id), []).append(entry)
            people.append((int(track_id), box, kpts))
        return Overlay(people=people, trail=list(self._trail), court=self.court)

    def result(self, total_frames: int, source_fps: float) -> dict[str, Any]:
        """``results.json``: the Badminton tracker's shape, plus per-player analytics."""
        court = self.court or {"found": False, "lines": [], "corners": None, "homography": None}
        homography = court.get("homography") if court.get("found") else None
        players = {}
        for track_id in sorted(self.players):
            frames = self.players[track_id]
            players[str(track_id)] = {
                "id": track_id,
                "firstFrame": frames[0]["frame"],
                "lastFrame": frames[-1]["frame"],
                "frames": frames,
                "analytics": player_analytics(frames, source_fps, homography, self.height),
            }
        shuttle = shuttle_entries(self.positions, self.frames, source_fps)
        return {
            "duration": round(total_frames / source_fps, 4) if source_fps > 0 else 0.0,
            "fps": source_fps,
            "totalFrames": total_frames,
            "processedFrames": len(self.frames),
            "videoWidth": self.width,
            "videoHeight": self.height,
            "players": players,
            "shuttle": shuttle,
            "courtDetection": court,
            "analytics": {
                "unit": "m" if homography is not None else "px",
                "players": {k: v["analytics"] for k, v in players.items()},
                "shuttleVisibleFrames": sum(p is not None for p in self.positions),
            },
        }


def summary(result: dict[str, Any], artifact: str = "results.json") -> dict[str, Any]:
    """The job result: ``results.json`` without the per-frame lists (events stay small)."""
    out = {k: v for k, v in result.items() if k not in ("players", "shuttle")}
    out["players"] = {k: {key: v[key] for key in ("id", "firstFrame", "lastFrame", "analytics")} | {
        "frameCount": len(v["frames"])} for k, v in result["players"].items()}  # fmt: skip
    out["shuttle"] = {"visibleFrames": result["analytics"]["shuttleVisibleFrames"], "frames": len(result["shuttle"])}
    out["results"] = artifact
    return out
