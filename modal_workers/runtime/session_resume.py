"""Resuming a live session on a new attempt after its worker was lost (SIGKILL, a lost node, a preemption).

A workload that can resume says so with :func:`resumable` and hands its state with its snapshots:
``ctx.session.snapshot(data, seq=..., state={...})``. After the snapshot's bytes are stored, the runtime
writes the slot's *resume point* beside them (``live/{slot}-resume.json``, :class:`ResumePoint`): the
snapshot (its key and sha256), the last frame it covers, where the feed's streams stand
(:class:`StreamMarks`), the counters and the workload's ``state``. Written after the bytes, it is the
slot's commit mark: a worker lost in between leaves the other slot's point the newest complete one.

A later attempt of the session (:func:`load_resume_point`) reads both slots' points and takes the newest
whose snapshot is intact; the runtime restores the input (the feed resumes after the point's stream
sequences, so the frames sent after the snapshot are replayed before live ones, each once) and the
workload finds the point in ``ctx.session.resume_point`` (``None``: start afresh, nothing was
snapshotted). A workload that is not resumable fails such an attempt with ``worker_lost``, as a lost
worker always did.

A snapshot taken with ``memory=N`` also says where its *memory* starts (``memory_frames_after``,
``memory_joints_after``): the newest ``N`` frames (at most :data:`MEMORY_MAX`) it covers since the last
reset, the views a splat trainer kept. A later attempt's feed starts there, and those frames come out of
``poll`` first as ``restored`` ones (counted nowhere, answered by no result), so the workload gets its
memory back rather than only the frames after the snapshot.

Where a state stands in the streams (:class:`StreamMarks`): a state covers the frames up to some ``seq``
and every control handed out before it was taken. :meth:`StreamMarks.position` is the FRAMES sequence after
which nothing it covers comes again (the frame ``seq`` or the last control handed out, the later of the
two) and the TELEMETRY sequence after which every joint sample a later frame may match comes (samples older
than that frame by more than the joint tolerance are not needed); :meth:`StreamMarks.memory` is where its
memory starts. Bounded: the last :data:`KEPT` frames and joint samples.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ConfigDict, Field, ValidationError

from contracts.base import Contract, JsonObject
from contracts.job_parts import Artifact

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
SLOTS = 2
"""Snapshot slots (the newest snapshot and the one before it); one resume point per slot."""
RESUME_NAME = "resume.json"
MAX_STATE_BYTES = 1024 * 1024
"""Largest workload state a resume point holds (as JSON); bigger state belongs in the snapshot's bytes."""
MEMORY_MAX = 512
"""Most frames a snapshot's memory holds (and a later attempt is handed as restored)."""
MEMORY_MAX_BYTES = 64 * 1024 * 1024
"""Most bytes of restored frames a later attempt's input holds (the oldest go first)."""


def resumable(workload: F) -> F:
    """Mark ``workload`` as one that resumes a session from its latest snapshot after a lost worker."""
    workload.resumable = True  # type: ignore[attr-defined]
    return workload


def is_resumable(workload: Any) -> bool:
    """Whether ``workload`` was marked with :func:`resumable`."""
    return getattr(workload, "resumable", False) is True


def slot_name(number: int, name: str) -> str:
    """The storage name of snapshot ``number``'s ``name`` (``live/{slot}-{name}``)."""
    return f"live/{number % SLOTS}-{name}"


class ResumePoint(Contract):
    """Where a session stood at one of its snapshots: what a later attempt restores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: int = Field(ge=1, description="The snapshot's number in the session (its slot: number % 2).")
    snapshot: Artifact
    seq: int = Field(ge=0, description="The last frame the snapshot covers.")
    frames_after: int = Field(ge=0, description="The FRAMES stream sequence a later attempt's feed resumes after.")
    joints_after: int = Field(ge=0, description="The TELEMETRY stream sequence it resumes the joints after.")
    results: int = Field(ge=0, description="Results numbered so far.")
    frames_processed: int = Field(default=0, ge=0)
    frames_dropped: int = Field(default=0, ge=0)
    state: JsonObject = Field(default_factory=dict, description="The workload's own state.")
    memory_frames_after: int | None = Field(
        default=None, ge=0, description="The FRAMES sequence after which the snapshot's memory (its frames) starts."
    )
    memory_joints_after: int | None = Field(
        default=None, ge=0, description="The TELEMETRY sequence after which the joints its memory may match come."
    )

    @property
    def memory_after(self) -> tuple[int, int] | None:
        """Where the snapshot's memory starts (FRAMES, TELEMETRY), if it has one before ``frames_after``."""
        if self.memory_frames_after is None or self.memory_frames_after >= self.frames_after:
            return None
        joints = self.joints_after if self.memory_joints_after is None else self.memory_joints_after
        return self.memory_frames_after, min(joints, self.joints_after)


def save_resume_point(host: Any, point: ResumePoint) -> None:
    """Store ``point`` in its snapshot's slot (after the snapshot's bytes: its commit mark)."""
    body = point.model_dump_json().encode()
    if len(body) > MAX_STATE_BYTES:
        raise ValueError(f"a session's resume state is limited to {MAX_STATE_BYTES} bytes ({len(body)})")
    host.store(slot_name(point.number, RESUME_NAME), body, "application/json")


def load_resume_point(host: Any) -> tuple[ResumePoint | None, bytes | None]:
    """The newest intact resume point of this session and its snapshot's bytes (``None, None``: none).

    ``host`` is the worker context (``load_stored``). A point whose snapshot no longer matches its
    sha256 (overwritten by a snapshot whose own point was never written) is passed over.
    """
    points: list[ResumePoint] = []
    for slot in range(SLOTS):
        raw = host.load_stored(slot_name(slot, RESUME_NAME))
        if raw is None:
            continue
        try:
            points.append(ResumePoint.model_validate_json(raw))
        except ValidationError:
            log.warning("skipping an unreadable resume point in slot %d", slot)
    for point in sorted(points, key=lambda p: p.number, reverse=True):
        data = host.load_stored(point.snapshot.name)
        if data is not None and hashlib.sha256(data).hexdigest() == point.snapshot.sha256:
            return point, data
        log.warning("resume point %d: its snapshot was overwritten; trying an older one", point.number)
    return None, None


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
        return frames, self._joints_after(max(ts for _, ts in handed) - joint_tolerance_s)

    def memory(self, seq: int, count: int, joint_tolerance_s: float) -> tuple[int, int]:
        """``(frames, joints)``: the stream sequences after which the newest ``count`` frames up to ``seq`` handed
        out since the last control (and the joint samples they may match) come; :meth:`position` when none."""
        frames, joints = self.position(seq, joint_tolerance_s)
        kept = [(stream_seq, ts) for s, stream_seq, ts in self._frames if s <= seq and stream_seq > self.control]
        kept = kept[-count:] if count > 0 else []
        if not kept:
            return frames, joints
        oldest = min(stream_seq for stream_seq, _ in kept) - 1
        return min(frames, oldest), min(joints, self._joints_after(min(ts for _, ts in kept) - joint_tolerance_s))

    def _joints_after(self, cutoff: float) -> int:
        """The TELEMETRY sequence after which every remembered sample taken at ``cutoff`` or later comes."""
        needed = [stream_seq for ts, stream_seq in self._joints if ts >= cutoff]
        if needed:
            return min(needed) - 1
        return max([self.base_joints, *(stream_seq for _, stream_seq in self._joints)])
