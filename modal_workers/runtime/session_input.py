"""A live session's input as its workload sees it: frames (each with its joint sample), reset and stop.

The runtime's feed (NATS for the local pool, the gateway's feed socket on Modal) calls :meth:`put`
on the event loop; the workload calls :meth:`SessionInput.poll` from its own thread and gets a
:class:`SessionBatch`: the frames ready since the last poll (oldest first), or a reset, or why the
session stops. Items keep the session's order: frames before a reset are dropped when the reset
arrives (they belong to the cleared model), frames before a stop are handed out before it.

Bounded by design: at most ``buffer`` frames wait; when the workload falls behind, the oldest is
dropped and counted, so it always works on the newest. ``frames_dropped`` also counts gaps in
``seq`` (frames that never reached this worker). The session stops by itself after
``idle_timeout_s`` without a frame (counted from :meth:`SessionInput.open`) and at ``max_session_s``.

An input made with ``hold`` starts closed: while the workload gets ready (a model loading, a lost
worker's state restored) it hands out nothing but keeps up to ``hold`` frames (then the oldest drop,
counted), and :meth:`SessionInput.open` hands them all out at the next poll. :meth:`SessionInput.restore`
starts it where a lost worker's snapshot left off (frames up to that ``seq`` are repeats), and
:attr:`SessionInput.marks` tells where in the streams what it handed out stands
(:mod:`modal_workers.runtime.session_marks`).

Each frame gets the robot's joint sample nearest to its capture time within ``joint_tolerance_s``.
When the session expects joints, a frame is held (at most ``joint_tolerance_s`` after it arrived)
until a sample at or after its time has arrived, so a sample sent a moment after its frame still
matches.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from contracts.session_feed import FeedBacklog, FeedControl, FeedFrame, FeedJoints
from modal_workers.runtime.session_marks import StreamMarks

StopReason = Literal["requested", "idle", "max_duration", "canceled"]
JOINTS_KEPT = 4096
"""Joint samples remembered for matching (about two minutes at 30 Hz)."""


@dataclass(frozen=True)
class SessionFrame:
    """One frame: ``data`` are the encoded image bytes; ``joints`` the matched sample, if any."""

    seq: int
    ts: float
    content_type: str
    data: bytes
    pose: list[float] | None = None
    joints: list[float] | None = None
    joints_ts: float | None = None

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


@dataclass
class _Pending:
    frame: FeedFrame
    data: bytes
    arrived: float


class SessionInput:
    """Frames, joints and control of one session, bounded, handed from the feed to the workload."""

    def __init__(
        self,
        *,
        buffer: int = 8,
        joint_tolerance_s: float = 0.05,
        idle_timeout_s: float = 300.0,
        max_session_s: float = 3600.0,
        expects_joints: bool = False,
        clock: Callable[[], float] = time.monotonic,
        hold: int | None = None,
    ) -> None:
        self.buffer, self.tolerance, self.hold = buffer, joint_tolerance_s, hold
        self.opened = hold is None
        self.backlog: int | None = None
        """The FRAMES sequence up to which the feed's items are a backlog (``None``: not known yet)."""
        self.marks = StreamMarks()
        self.idle_timeout_s, self.max_session_s, self.expects_joints = idle_timeout_s, max_session_s, expects_joints
        self.clock = clock
        self._cond = threading.Condition()
        self._items: deque[_Pending | FeedControl] = deque()
        self._joint_ts: list[float] = []
        self._joints: list[list[float]] = []
        self._started = self._last_frame = clock()
        self._stop: StopReason | None = None
        self.frames_received = self.frames_processed = self.frames_dropped = 0
        self.joints_received = 0
        self.last_frame_stream_seq = self.last_joints_stream_seq = 0

    # -- the feed's side (event loop) ---------------------------------------------------------------
    def put(self, item: FeedFrame | FeedJoints | FeedControl | FeedBacklog, data: bytes | None = None) -> None:
        """One item of the feed, in stream order."""
        with self._cond:
            if isinstance(item, FeedBacklog):
                self.backlog = max(self.backlog or 0, item.stream_seq)
            elif isinstance(item, FeedJoints):
                self._put_joints(item)
            elif isinstance(item, FeedFrame):
                self._put_frame(item, data or b"")
            else:
                self.last_frame_stream_seq = max(self.last_frame_stream_seq, item.stream_seq)
                if item.action == "reset":
                    self._drop(lambda queued: isinstance(queued, _Pending))
                self._items.append(item)
            self._cond.notify_all()

    def _put_frame(self, frame: FeedFrame, data: bytes) -> None:
        self.last_frame_stream_seq = max(self.last_frame_stream_seq, frame.stream_seq)
        if frame.seq <= self.frames_received:
            return  # a repeat (a feed that resumed)
        self.frames_dropped += frame.seq - self.frames_received - 1
        self.frames_received = frame.seq
        self._last_frame = self.clock()
        self._items.append(_Pending(frame, data, self._last_frame))
        if self.held() > (self.buffer if self.opened or self.hold is None else self.hold):
            oldest = next(i for i in self._items if isinstance(i, _Pending))
            self._items.remove(oldest)
            self.frames_dropped += 1

    def _put_joints(self, sample: FeedJoints) -> None:
        self.last_joints_stream_seq = max(self.last_joints_stream_seq, sample.stream_seq)
        self.joints_received += 1
        at = bisect.bisect_right(self._joint_ts, sample.ts)
        self._joint_ts.insert(at, sample.ts)
        self._joints.insert(at, sample.joint_angles)
        self.marks.joints(sample.ts, sample.stream_seq)
        if len(self._joint_ts) > JOINTS_KEPT:
            del self._joint_ts[0], self._joints[0]

    def _drop(self, which: Callable[[Any], bool]) -> None:
        kept = deque(i for i in self._items if not which(i))
        self.frames_dropped += len(self._items) - len(kept)
        self._items = kept

    def position(self, seq: int) -> tuple[int, int, int, int]:
        """Where a state covering frames up to ``seq`` (and every control handed out) resumes: the FRAMES and
        TELEMETRY sequences after which its feed goes on, and the frames processed and dropped by then."""
        with self._cond:
            frames_after, joints_after = self.marks.position(seq, self.tolerance)
            processed = self.frames_processed - self.marks.handed_after(seq)  # those come again
            return frames_after, joints_after, max(0, processed), self.frames_dropped

    def held(self) -> int:
        """Frames waiting to be handed out."""
        return sum(isinstance(i, _Pending) for i in self._items)

    def caught_up(self, timeout: float) -> bool:
        """Whether the feed handed over its backlog (waits up to ``timeout`` seconds for it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.backlog is None or self.last_frame_stream_seq < self.backlog:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def open(self) -> int:
        """The workload is ready: hand out what was held (at the next poll); how many frames that is."""
        with self._cond:
            self.opened = True
            self._last_frame = max(self._last_frame, self.clock())  # idle counts from now
            self._cond.notify_all()
            return self.held()

    def restore(self, seq: int, frames_after: int, joints_after: int, processed: int = 0, dropped: int = 0) -> None:
        """Start where a snapshot covering frames up to ``seq`` left off: the feed resumes after the stream
        sequences ``frames_after`` (FRAMES) and ``joints_after`` (TELEMETRY); frames up to ``seq`` are
        repeats; the counts go on from ``processed`` and ``dropped``."""
        with self._cond:
            self.frames_received, self.frames_processed, self.frames_dropped = seq, processed, dropped
            self.last_frame_stream_seq, self.last_joints_stream_seq = frames_after, joints_after
            self.marks = StreamMarks(frames_after, joints_after)

    def close(self, reason: StopReason = "canceled") -> None:
        """Stop the session now (a cancel): the next poll says so."""
        with self._cond:
            self._stop = self._stop or reason
            self._cond.notify_all()

    # -- the workload's side ----------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> SessionBatch:
        """Ready frames, a reset or a stop; waits up to ``timeout`` seconds for one of them."""
        deadline = self.clock() + timeout
        with self._cond:
            while True:
                batch = self._take()
                if batch is not None:
                    return batch
                left = deadline - self.clock()
                if left <= 0:
                    return SessionBatch()
                self._cond.wait(min(left, max(self.tolerance, 0.01)))

    def _take(self) -> SessionBatch | None:
        if self._stop is not None:
            return SessionBatch(stop=self._stop)
        if not self.opened:
            return None
        frames: list[SessionFrame] = []
        while self._items:
            head = self._items[0]
            if isinstance(head, FeedControl):
                if frames:
                    break
                self._items.popleft()
                self.marks.handed_control(head.stream_seq)
                if head.action == "reset":
                    return SessionBatch(reset=True)
                self._stop = "requested"
                return SessionBatch(stop="requested")
            if not self._ready(head):
                break
            self._items.popleft()
            self.marks.frame(head.frame.seq, head.frame.stream_seq, head.frame.ts)
            frames.append(self._matched(head))
        if frames:
            self.frames_processed += len(frames)
            return SessionBatch(frames=frames)
        return self._timed_out()

    def _timed_out(self) -> SessionBatch | None:
        now = self.clock()
        if now - self._started >= self.max_session_s:
            self._stop = "max_duration"
        elif now - self._last_frame >= self.idle_timeout_s and not self._items:
            self._stop = "idle"
        return None if self._stop is None else SessionBatch(stop=self._stop)

    def _ready(self, pending: _Pending) -> bool:
        if not self.expects_joints or (self._joint_ts and self._joint_ts[-1] >= pending.frame.ts):
            return True
        return self.clock() - pending.arrived >= self.tolerance

    def _matched(self, pending: _Pending) -> SessionFrame:
        f = pending.frame
        joints, joints_ts = None, None
        if self._joint_ts:
            at = bisect.bisect_left(self._joint_ts, f.ts)
            candidates = [i for i in (at - 1, at) if 0 <= i < len(self._joint_ts)]
            near = min(candidates, key=lambda i: abs(self._joint_ts[i] - f.ts))
            if abs(self._joint_ts[near] - f.ts) <= self.tolerance:
                joints, joints_ts = self._joints[near], self._joint_ts[near]
        return SessionFrame(f.seq, f.ts, f.content_type, pending.data, f.pose, joints, joints_ts)

    def stats(self) -> dict[str, int]:
        """Frame and joint counts (what ``ctx.status`` reports with every progress)."""
        with self._cond:
            return {
                "frames_received": self.frames_received,
                "frames_processed": self.frames_processed,
                "frames_dropped": self.frames_dropped,
                "joints_received": self.joints_received,
            }
