"""Where a live session's state stands in its feed's streams, so that a later attempt resumes right after it.

A workload's state (a snapshot) covers the frames up to some ``seq`` and every control it was handed
before it took the snapshot. :class:`StreamMarks` remembers, for the items the session input handed out,
their stream sequences: :meth:`StreamMarks.position` is the FRAMES sequence after which nothing the
state covers comes again (the frame ``seq`` or the last control handed out, the later of the two) and
the TELEMETRY sequence after which every joint sample a later frame may match comes (samples older than
that frame by more than the joint tolerance are not needed). Bounded: the last :data:`KEPT` frames and
joint samples.
"""

from __future__ import annotations

from collections import deque

KEPT = 4096
"""Frames and joint samples remembered (a snapshot's ``seq`` is never that far behind the newest)."""


class StreamMarks:
    """Stream sequences of what the session input handed out and of the joint samples it got."""

    def __init__(self, frames_after: int = 0, joints_after: int = 0, kept: int = KEPT) -> None:
        self.base_frames, self.base_joints = frames_after, joints_after
        self._frames: deque[tuple[int, int, float]] = deque(maxlen=kept)
        self._joints: deque[tuple[float, int]] = deque(maxlen=kept)
        self.control = 0

    def frame(self, seq: int, stream_seq: int, ts: float) -> None:
        """Frame ``seq`` (FRAMES ``stream_seq``, captured at ``ts``) was handed to the workload."""
        self._frames.append((seq, stream_seq, ts))

    def handed_control(self, stream_seq: int) -> None:
        """A control (stop, reset) at FRAMES ``stream_seq`` was handed to the workload."""
        self.control = max(self.control, stream_seq)

    def joints(self, ts: float, stream_seq: int) -> None:
        """A joint sample at TELEMETRY ``stream_seq`` (taken at ``ts``) arrived."""
        self._joints.append((ts, stream_seq))

    def handed_after(self, seq: int) -> int:
        """How many of the frames handed out (of those remembered) come after ``seq``."""
        return sum(1 for s, _, _ in self._frames if s > seq)

    def position(self, seq: int, joint_tolerance_s: float) -> tuple[int, int]:
        """``(frames, joints)``: the stream sequences a state covering frames up to ``seq`` resumes after."""
        handed = [(stream_seq, ts) for s, stream_seq, ts in self._frames if s <= seq]
        frames = max([self.base_frames, self.control, *(stream_seq for stream_seq, _ in handed)])
        if not handed:
            return frames, self.base_joints
        cutoff = max(ts for _, ts in handed) - joint_tolerance_s
        needed = [stream_seq for ts, stream_seq in self._joints if ts >= cutoff]
        if needed:
            return frames, min(needed) - 1
        return frames, max([self.base_joints, *(stream_seq for _, stream_seq in self._joints)])
