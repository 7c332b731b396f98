"""``ctx.session``: what a live-session workload (splat, vlm) sees beside the usual :class:`WorkerContext`.

===================================================  ==================================================
``ctx.session.ready()``                              the workload is ready (model loaded, trainer
                                                     built): ``session.ready``, the session is ``live``
                                                     and the frames held meanwhile come out of ``poll``
                                                     (the first ``poll`` says so for a workload that
                                                     does not)
``ctx.session.poll(timeout)``                        a :class:`~modal_workers.runtime.session_input.SessionBatch`:
                                                     ready frames (each with its matched joint sample),
                                                     a reset, or why the session stops
``ctx.session.status(fraction, message, **metrics)``  progress with the workload's figures merged with
                                                     the input's counts (``frames_received`` …; its own
                                                     ``frames_dropped`` adds to the input's); the
                                                     session's status route shows the latest
``ctx.session.snapshot(data, seq=..., name=...)``     store a live output (e.g. the latest PLY) and emit
                                                     ``session.snapshot``; two slots alternate, so the
                                                     previous snapshot stays readable while the next is
                                                     written and storage holds two per session; with
                                                     ``state=``, a later attempt resumes from it, and
                                                     with ``memory=N`` its newest ``N`` frames come
                                                     back to it first, ``restored``
``ctx.session.resume_point``                         on an attempt that resumes the session: the
                                                     :class:`~modal_workers.runtime.session_resume.ResumePoint`
                                                     to restore (``None``: start afresh)
``ctx.session.result(first_seq, last_seq, ...)``      emit ``session.result`` (numbered from 1)
``ctx.session.alert(chunk, ...)``                     emit ``session.alert`` for a result that matched
===================================================  ==================================================

A workload's loop: load · ``ready`` · ``poll`` → stop? return the result (the session succeeds) · reset?
clear the model · frames? train on them, ``status`` and now and then ``snapshot``. Idle and length limits
come from the session's params; once the job's cancel is seen, ``poll`` raises the context's
``CancelledError``. Resuming after a lost worker: :mod:`modal_workers.runtime.session_resume`.

What ``poll`` hands out (frames with their joints, resets, a requested stop) and what the workload
emits (results, alerts, snapshots) also go to the session's recording (``recorder``, set by the
runtime: :mod:`modal_workers.runtime.recording.writer`). A workload that can score its final output on
recorded frames (splat: PSNR) sets ``scorer``, which a replay's comparison calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from contracts.events import sessions as se
from contracts.events.registry import EventType
from contracts.job_parts import Artifact
from contracts.specs.session_params import SessionParams
from modal_workers.runtime.recording.writer import RecordingWriter
from modal_workers.runtime.session_frames import SessionBatch, SessionFrame
from modal_workers.runtime.session_input import SessionInput
from modal_workers.runtime.session_resume import ResumePoint, save_resume_point, slot_name

CANCEL_CHECK_S = 0.25
"""How often a waiting :meth:`LiveSession.poll` looks at the job's cancel."""
BACKLOG_WAIT_S = 15.0
"""Longest :meth:`LiveSession.ready` waits for the feed's backlog (the frames sent while it started)."""


class SessionHost(Protocol):
    """The parts of the worker context a live session uses."""

    def store(self, name: str, data: bytes | Path, content_type: str | None = None) -> Artifact:
        """Store bytes under the job's results; the artifact (no event)."""

    def emit(self, type_: EventType, payload: BaseModel, name: str | None = None) -> Any:
        """Queue one event of this attempt (``name``: a deterministic id)."""

    def progress(self, fraction: float, message: str | None = None, metrics: dict[str, Any] | None = None) -> None:
        """Report progress (throttled)."""

    def check_cancelled(self) -> None:
        """Raise once the job's cancel was seen."""


Scorer = Callable[[bytes, dict[str, Any], list[SessionFrame]], "float | None"]
"""``(final snapshot, the session's params, frames) -> score``: how well an output renders those frames."""


class LiveSession:
    """One run of a live session: its bounded input and its outputs (snapshots, results, alerts)."""

    def __init__(
        self, host: SessionHost, params: SessionParams, *, expects_joints: bool, attempt: int = 1,
        resumable: bool = False,
    ) -> None:  # fmt: skip
        self.host, self.params, self.attempt, self.resumable = host, params, attempt, resumable
        self.input = SessionInput(
            buffer=params.frame_buffer,
            joint_tolerance_s=params.joint_tolerance_ms / 1000,
            joint_wait_s=params.joint_wait_ms / 1000,
            idle_timeout_s=params.idle_timeout_s,
            max_session_s=params.max_session_s,
            expects_joints=expects_joints,
            hold=params.start_buffer,
        )
        self._lock = threading.Lock()
        self._fraction = 0.0
        self.snapshots = self.results = 0
        self.recorder: RecordingWriter | None = None
        self.scorer: Scorer | None = None
        self._failure: Exception | None = None
        self.started = time.monotonic()
        self.is_ready = False
        self.resume_point: ResumePoint | None = None
        self.resume_snapshot: bytes | None = None
        """The resume point's snapshot bytes (a later attempt that restored one)."""
        self.on_ready: Any = None
        """Set by the runtime: called once when the workload is ready (``session.ready``, ``session.resumed``)."""

    def restore(self, point: ResumePoint | None) -> None:
        """Resume where ``point`` left off (``None``: afresh, from the session's first frame); before the feed opens."""
        self.resume_point = point
        if point is not None:
            self.snapshots, self.results = point.number, point.results
            self.input.restore(
                point.seq, point.frames_after, point.joints_after, point.frames_processed, point.frames_dropped,
                memory_after=point.memory_after,
            )  # fmt: skip

    def ready(self) -> None:
        """The workload is ready: once the feed handed over the frames sent meanwhile (its backlog; waited for
        up to :data:`BACKLOG_WAIT_S`), the session is ``live`` and they come out of ``poll`` first."""
        with self._lock:
            if self.is_ready:
                return
            self.is_ready = True
        deadline = time.monotonic() + BACKLOG_WAIT_S
        while not self.input.caught_up(min(CANCEL_CHECK_S, max(0.0, deadline - time.monotonic()))):
            self.host.check_cancelled()
            if time.monotonic() >= deadline:
                break
        held = self.input.open()
        if self.on_ready is not None:
            self.on_ready(self, held, time.monotonic() - self.started)

    def poll(self, timeout: float = 0.5) -> SessionBatch:
        """Ready frames, a reset or a stop (waits up to ``timeout`` seconds for one).

        Raises the context's ``CancelledError`` once the job's cancel was seen (checked at least
        every :data:`CANCEL_CHECK_S`), so a canceled session never reports success.
        """
        self.ready()
        deadline = time.monotonic() + timeout
        while True:
            self.host.check_cancelled()
            if self._failure is not None:
                raise self._failure
            left = deadline - time.monotonic()
            batch = self.input.poll(max(0.0, min(CANCEL_CHECK_S, left)))
            if batch.frames or batch.reset or batch.stop or left <= CANCEL_CHECK_S:
                if self.recorder is not None:
                    self._record(self.recorder, batch)
                return batch

    def fail(self, error: Exception) -> None:
        """End the session with ``error``, raised by the next poll (its input can no longer come: a
        source that broke off)."""
        self._failure = error

    @staticmethod
    def _record(recorder: RecordingWriter, batch: SessionBatch) -> None:
        new = [frame for frame in batch.frames if not frame.restored]  # restored ones were recorded before
        if new:
            recorder.frames(new)
        if batch.reset:
            recorder.control("reset")
        if batch.stop == "requested":
            recorder.control("stop")

    def status(self, fraction: float | None = None, message: str | None = None, **metrics: Any) -> None:
        """Progress (``fraction`` defaults to the last one) with ``metrics`` and the input's counts.

        A workload's own ``frames_dropped`` (frames it took but skipped, e.g. merged away when it fell
        behind) adds to the input's, so the session's ``frames_dropped`` counts both.
        """
        with self._lock:
            if fraction is not None:
                self._fraction = max(0.0, min(1.0, fraction))
            counts = self.input.stats()
            counts["frames_dropped"] += int(metrics.pop("frames_dropped", 0) or 0)
            self.host.progress(self._fraction, message, {**metrics, **counts})

    def snapshot(
        self, data: bytes | Path, *, seq: int, name: str = "snapshot.ply", content_type: str | None = None,
        state: dict[str, Any] | None = None, memory: int = 0,
    ) -> Artifact:  # fmt: skip
        """Store a live output (slot ``n % 2``) and emit ``session.snapshot`` covering frames up to ``seq``;
        with ``state`` (JSON) a resume point beside it, from which a later attempt resumes the session, handed
        the newest ``memory`` frames up to ``seq`` again first (``restored``: what the state was trained on)."""
        with self._lock:
            self.snapshots += 1
            number, results = self.snapshots, self.results
        artifact = self.host.store(slot_name(number, name), data, content_type)
        if state is not None:
            frames_after, joints_after, processed, dropped = self.input.position(seq)
            memory_frames, memory_joints = self.input.memory(seq, memory)
            point = ResumePoint(
                number=number, snapshot=artifact, seq=seq, frames_after=frames_after, joints_after=joints_after,
                results=results, frames_processed=processed, frames_dropped=dropped, state=state,
                memory_frames_after=memory_frames, memory_joints_after=memory_joints,
            )  # fmt: skip
            save_resume_point(self.host, point)
        if self.recorder is not None:
            body = data.read_bytes() if isinstance(data, Path) else data
            self.recorder.snapshot(body, seq=seq, name=name, content_type=artifact.content_type)
        payload = se.SessionSnapshotPayload(artifact=artifact, seq=seq, frames=self.input.frames_processed)
        self.host.emit(EventType.SESSION_SNAPSHOT, payload, f"snap-{number}")
        return artifact

    def result(
        self,
        first_seq: int,
        last_seq: int,
        *,
        text: str | None = None,
        tokens: int | None = None,
        latency_ms: float | None = None,
        **data: Any,
    ) -> int:
        """Emit ``session.result`` over frames ``first_seq..last_seq``; its chunk number (from 1)."""
        with self._lock:
            self.results += 1
            chunk = self.results
        payload = se.SessionResultPayload(
            chunk=chunk, first_seq=first_seq, last_seq=last_seq, text=text, tokens=tokens, latency_ms=latency_ms,
            data=data,
        )  # fmt: skip
        self.host.emit(EventType.SESSION_RESULT, payload, f"res-{chunk}")
        if self.recorder is not None:
            self.recorder.result(payload)
        return chunk

    def alert(
        self, chunk: int, first_seq: int, last_seq: int, *, pattern: str, message: str, text: str | None = None
    ) -> None:
        """Emit ``session.alert``: result ``chunk`` matched ``pattern``."""
        payload = se.SessionAlertPayload(
            chunk=chunk, first_seq=first_seq, last_seq=last_seq, pattern=pattern, message=message, text=text
        )
        self.host.emit(EventType.SESSION_ALERT, payload, f"alert-{chunk}")
        if self.recorder is not None:
            self.recorder.alert(payload)
