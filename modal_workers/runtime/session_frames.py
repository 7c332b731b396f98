"""What a live session's workload is handed by ``ctx.session.poll``: :class:`SessionBatch` of :class:`SessionFrame`.

A frame carries its encoded bytes, its capture time, the pose sent with it and the robot's joint sample
matched to it: :class:`JointTrack` keeps the last :data:`JOINTS_KEPT` samples in time order (they may
arrive out of order), says whether one at or after a frame's capture time has come (a frame waits for it,
so a sample sent a moment after its frame still matches) and gives the nearest within the tolerance.

A ``restored`` frame is one a lost worker had already trained on before the snapshot a later attempt
resumes from, handed again so the workload gets its memory back (a splat trainer's views): not a new
frame, it is counted nowhere and answered by no result.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Literal

StopReason = Literal["requested", "idle", "max_duration", "canceled"]
JOINTS_KEPT = 4096
"""Joint samples remembered for matching (about two minutes at 30 Hz)."""


@dataclass(frozen=True)
class SessionFrame:
    """One frame: ``data`` are the encoded image bytes; ``joints`` the matched sample, if any; ``restored``:
    handed again from a lost worker's memory (seen before the resumed snapshot: not new, no result)."""

    seq: int
    ts: float
    content_type: str
    data: bytes
    pose: list[float] | None = None
    joints: list[float] | None = None
    joints_ts: float | None = None
    restored: bool = False

    def image(self) -> Any:
        """The frame decoded as an RGB ``uint8`` array (H × W × 3), or ``None`` when it does not decode."""
        import cv2
        import numpy as np

        bgr = cv2.imdecode(np.frombuffer(self.data, np.uint8), cv2.IMREAD_COLOR)
        return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class SessionBatch:
    """What one poll found: ready frames (oldest first), a reset, or the reason to stop."""

    frames: list[SessionFrame] = field(default_factory=list)
    reset: bool = False
    stop: StopReason | None = None


class JointTrack:
    """At most ``kept`` joint samples in time order; the nearest to a time within ``tolerance_s``."""

    def __init__(self, tolerance_s: float, kept: int = JOINTS_KEPT) -> None:
        self.tolerance, self.kept = tolerance_s, kept
        self._ts: list[float] = []
        self._angles: list[list[float]] = []

    def add(self, ts: float, angles: list[float]) -> None:
        """Remember a sample taken at ``ts`` (the oldest is forgotten past ``kept``)."""
        at = bisect.bisect_right(self._ts, ts)
        self._ts.insert(at, ts)
        self._angles.insert(at, angles)
        if len(self._ts) > self.kept:
            del self._ts[0], self._angles[0]

    def covers(self, ts: float) -> bool:
        """Whether a sample taken at ``ts`` or later has arrived."""
        return bool(self._ts) and self._ts[-1] >= ts

    def nearest(self, ts: float) -> tuple[list[float], float] | None:
        """The sample nearest to ``ts`` and its time, if one is within the tolerance."""
        if not self._ts:
            return None
        at = bisect.bisect_left(self._ts, ts)
        candidates = [i for i in (at - 1, at) if 0 <= i < len(self._ts)]
        near = min(candidates, key=lambda i: abs(self._ts[i] - ts))
        if abs(self._ts[near] - ts) > self.tolerance:
            return None
        return self._angles[near], self._ts[near]
