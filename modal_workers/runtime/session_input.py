"""A live session's input as its workload sees it: frames (each with its joint sample), reset and stop.

The runtime's feed (NATS for the local pool, the gateway's feed socket on Modal) calls :meth:`put` on the
event loop; the workload calls :meth:`SessionInput.poll` from its own thread and gets a
:class:`~modal_workers.runtime.session_frames.SessionBatch`: the frames ready since the last poll (oldest
first), or a reset, or why the session stops. Items keep the session's order: frames before a reset are
dropped when the reset arrives (they belong to the cleared model), frames before a stop are handed out
before it.

Bounded by design: at most ``buffer`` frames wait; when the workload falls behind, the oldest is
dropped and counted, so it always works on the newest. ``frames_dropped`` also counts gaps in
``seq`` (frames that never reached this worker). The session stops by itself after
``idle_timeout_s`` without a frame (counted from :meth:`SessionInput.open`) and at ``max_session_s``.

An input made with ``hold`` starts closed: while the workload gets ready (a model loading, a lost
worker's state restored) it hands out nothing but keeps up to ``hold`` frames (then the oldest drop,
counted), and :meth:`SessionInput.open` hands them all out at the next poll. :meth:`SessionInput.restore`
starts it where a lost worker's snapshot left off (frames up to that ``seq`` are repeats), and
:attr:`SessionInput.marks` tells where in the streams what it handed out stands
(:class:`~modal_workers.runtime.session_resume.StreamMarks`). A snapshot with a memory (the frames its
state was trained on) restores them too: the feed starts before them, and the frames up to
``restored_until`` (FRAMES) come out first as ``restored`` (counted nowhere, never dropped for new ones;
at most :data:`~modal_workers.runtime.session_resume.MEMORY_MAX` frames and ``MEMORY_MAX_BYTES``).

Each frame gets the robot's joint sample nearest to its capture time within ``joint_tolerance_s``
(:class:`~modal_workers.runtime.session_frames.JointTrack`). When the session expects joints, a frame is
held (at most ``joint_wait_s``, or ``joint_tolerance_s`` when longer, after it arrived or after the
input opened) until a sample at or
after its time has arrived, so a sample sent with its frame still matches however the two paths (the
session socket, the robot's) delay them. The input opens
only once the feed handed over the samples stored when it opened, as well as the frames: a backlog's
frames (a session starting, a resumed one) come at once, its samples from a second consumer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.session_feed import FeedBacklog, FeedControl, FeedFrame, FeedJoints
from modal_workers.runtime.session_frames import JointTrack, SessionBatch, SessionFrame, StopReason
from modal_workers.runtime.session_resume import MEMORY_MAX, MEMORY_MAX_BYTES, StreamMarks


@dataclass
class _Pending:
    frame: FeedFrame
    data: bytes
    arrived: float
    restored: bool = False

    @property
    def new(self) -> bool:
        return not self.restored


class SessionInput:
    """Frames, joints and control of one session, bounded, handed from the feed to the workload."""

    def __init__(
        self,
        *,
        buffer: int = 8,
        joint_tolerance_s: float = 0.05,
        joint_wait_s: float = 0.25,
        idle_timeout_s: float = 300.0,
        max_session_s: float = 3600.0,
        expects_joints: bool = False,
        clock: Callable[[], float] = time.monotonic,
        hold: int | None = None,
    ) -> None:
        self.buffer, self.tolerance, self.hold = buffer, joint_tolerance_s, hold
        self.joint_wait_s = max(joint_wait_s, joint_tolerance_s)  # a sample as far off as matches may come as late
        self.opened = hold is None
        self.backlog: int | None = None
        """The FRAMES sequence up to which the feed's items are a backlog (``None``: not known yet)."""
        self.joints_backlog = 0
        """The TELEMETRY sequence up to which the robot's samples were stored when the feed opened: the
        backlog's frames wait for them (a feed opens on the joints after the frames)."""
        self.marks = StreamMarks()
        self.idle_timeout_s, self.max_session_s, self.expects_joints = idle_timeout_s, max_session_s, expects_joints
        self.clock = clock
        self._cond = threading.Condition()
        self._items: deque[_Pending | FeedControl] = deque()
        self._joints = JointTrack(joint_tolerance_s)
        self.restored_until = 0
        """The FRAMES sequence up to which frames are a lost worker's memory, handed out as ``restored``."""
        self._started = self._last_frame = self._opened_at = clock()
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
                self.joints_backlog = max(self.joints_backlog, item.joints_stream_seq or 0)
            elif isinstance(item, FeedJoints):
                self._put_joints(item)
            elif isinstance(item, FeedFrame):
                self._put_frame(item, data or b"")
            else:
                self.last_frame_stream_seq = max(self.last_frame_stream_seq, item.stream_seq)
                if item.stream_seq <= self.restored_until:
                    return  # applied before the snapshot whose memory is restored
                if item.action == "reset":
                    self._drop(lambda queued: isinstance(queued, _Pending))
                self._items.append(item)
            self._cond.notify_all()

    def _put_frame(self, frame: FeedFrame, data: bytes) -> None:
        self.last_frame_stream_seq = max(self.last_frame_stream_seq, frame.stream_seq)
        if frame.stream_seq <= self.restored_until:
            self._items.append(_Pending(frame, data, self.clock(), restored=True))
            restored = [i for i in self._items if isinstance(i, _Pending) and i.restored]
            while len(restored) > MEMORY_MAX or sum(len(i.data) for i in restored) > MEMORY_MAX_BYTES:
                self._items.remove(restored.pop(0))  # the oldest go first
            return
        if frame.seq <= self.frames_received:
            return  # a repeat (a feed that resumed)
        self.frames_dropped += frame.seq - self.frames_received - 1
        self.frames_received = frame.seq
        self._last_frame = self.clock()
        self._items.append(_Pending(frame, data, self._last_frame))
        if self.held() > (self.buffer if self.opened or self.hold is None else self.hold):
            oldest = next(i for i in self._items if isinstance(i, _Pending) and i.new)
            self._items.remove(oldest)
            self.frames_dropped += 1

    def _put_joints(self, sample: FeedJoints) -> None:
        self.last_joints_stream_seq = max(self.last_joints_stream_seq, sample.stream_seq)
        self.joints_received += 1
        self._joints.add(sample.ts, sample.joint_angles)
        self.marks.joints(sample.ts, sample.stream_seq)

    def _drop(self, which: Callable[[Any], bool]) -> None:
        self.frames_dropped += sum(isinstance(i, _Pending) and i.new for i in self._items if which(i))
        self._items = deque(i for i in self._items if not which(i))

    def position(self, seq: int) -> tuple[int, int, int, int]:
        """Where a state covering frames up to ``seq`` (and every control handed out) resumes: the FRAMES and
        TELEMETRY sequences after which its feed goes on, and the frames processed and dropped by then."""
        with self._cond:
            frames_after, joints_after = self.marks.position(seq, self.tolerance)
            processed = self.frames_processed - self.marks.handed_after(seq)  # those come again
            return frames_after, joints_after, max(0, processed), self.frames_dropped

    def memory(self, seq: int, count: int) -> tuple[int, int]:
        """Where the memory of a state covering frames up to ``seq`` starts (FRAMES, TELEMETRY): its newest
        ``count`` frames since the last control (at most :data:`MEMORY_MAX`), which a later attempt restores."""
        with self._cond:
            return self.marks.memory(seq, min(count, MEMORY_MAX), self.tolerance)

    def feed_position(self) -> tuple[int, int, int]:
        """Where a feed (re)opened now starts: after these FRAMES and TELEMETRY sequences, and the FRAMES sequence
        up to which its frames are restored ones (0: none left to come)."""
        with self._cond:
            restoring = self.restored_until if self.restored_until > self.last_frame_stream_seq else 0
            return self.last_frame_stream_seq, self.last_joints_stream_seq, restoring

    def held(self) -> int:
        """New frames waiting to be handed out (restored ones aside)."""
        return sum(isinstance(i, _Pending) and i.new for i in self._items)

    def caught_up(self, timeout: float) -> bool:
        """Whether the feed handed over its backlog, the joint samples stored by then included (waits up
        to ``timeout`` seconds for it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (
                self.backlog is None
                or self.last_frame_stream_seq < self.backlog
                or self.last_joints_stream_seq < self.joints_backlog
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def open(self) -> int:
        """The workload is ready: hand out what was held (at the next poll); how many frames that is."""
        with self._cond:
            self.opened = True
            self._opened_at = self.clock()
            self._last_frame = max(self._last_frame, self._opened_at)  # idle counts from now
            self._cond.notify_all()
            return self.held()

    def restore(
        self, seq: int, frames_after: int, joints_after: int, processed: int = 0, dropped: int = 0,
        memory_after: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        """Start where a snapshot covering frames up to ``seq`` left off: the feed resumes after the stream
        sequences ``frames_after`` (FRAMES) and ``joints_after`` (TELEMETRY); frames up to ``seq`` are
        repeats; the counts go on from ``processed`` and ``dropped``. With ``memory_after`` (the FRAMES and
        TELEMETRY sequences where the snapshot's memory starts) the feed starts there instead, and the frames
        up to ``frames_after`` come out ``restored``."""
        frames_from, joints_from = memory_after or (frames_after, joints_after)
        with self._cond:
            self.frames_received, self.frames_processed, self.frames_dropped = seq, processed, dropped
            self.restored_until = frames_after if frames_from < frames_after else 0
            self.last_frame_stream_seq = min(frames_from, frames_after)
            self.last_joints_stream_seq = min(joints_from, joints_after)
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
                self._cond.wait(min(left, max(self.joint_wait_s, 0.01)))

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
            self.frames_processed += sum(not f.restored for f in frames)
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
        if not self.expects_joints or self._joints.covers(pending.frame.ts):
            return True
        return self.clock() - max(pending.arrived, self._opened_at) >= self.joint_wait_s  # a held frame: from the open

    def _matched(self, pending: _Pending) -> SessionFrame:
        f = pending.frame
        joints, joints_ts = self._joints.nearest(f.ts) or (None, None)
        return SessionFrame(f.seq, f.ts, f.content_type, pending.data, f.pose, joints, joints_ts, pending.restored)

    def stats(self) -> dict[str, int]:
        """Frame and joint counts (what ``ctx.status`` reports with every progress)."""
        with self._cond:
            return {
                "frames_received": self.frames_received,
                "frames_processed": self.frames_processed,
                "frames_dropped": self.frames_dropped,
                "joints_received": self.joints_received,
            }
