"""``ctx.session``: what a live-session workload (splat, vlm) sees beside the usual :class:`WorkerContext`.

===================================================  ==================================================
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
                                                     written and storage holds two per session
``ctx.session.result(first_seq, last_seq, ...)``      emit ``session.result`` (numbered from 1)
``ctx.session.alert(chunk, ...)``                     emit ``session.alert`` for a result that matched
===================================================  ==================================================

A workload's loop: ``poll`` → stop? return the result (the session succeeds) · reset? clear the model ·
frames? train on them, ``status`` and now and then ``snapshot``. Idle and length limits come from the
session's params; once the job's cancel is seen, ``poll`` raises the context's ``CancelledError``.

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
from contracts.job_record import Artifact
from contracts.specs.session_params import SessionParams
from modal_workers.runtime.recording.writer import RecordingWriter
from modal_workers.runtime.session_input import SessionBatch, SessionFrame, SessionInput

CANCEL_CHECK_S = 0.25
"""How often a waiting :meth:`LiveSession.poll` looks at the job's cancel."""
SNAPSHOT_SLOTS = 2
"""Snapshot objects kept per session: the newest and the one before it."""


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

    def __init__(self, host: SessionHost, params: SessionParams, *, expects_joints: bool) -> None:
        self.host, self.params = host, params
        self.input = SessionInput(
            buffer=params.frame_buffer,
            joint_tolerance_s=params.joint_tolerance_ms / 1000,
            idle_timeout_s=params.idle_timeout_s,
            max_session_s=params.max_session_s,
            expects_joints=expects_joints,
        )
        self._lock = threading.Lock()
        self._fraction = 0.0
        self.snapshots = self.results = 0
        self.recorder: RecordingWriter | None = None
        self.scorer: Scorer | None = None
        self._failure: Exception | None = None

    def poll(self, timeout: float = 0.5) -> SessionBatch:
        """Ready frames, a reset or a stop (waits up to ``timeout`` seconds for one).

        Raises the context's ``CancelledError`` once the job's cancel was seen (checked at least
        every :data:`CANCEL_CHECK_S`), so a canceled session never reports success.
        """
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
        if batch.frames:
            recorder.frames(batch.frames)
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
        self, data: bytes | Path, *, seq: int, name: str = "snapshot.ply", content_type: str | None = None
    ) -> Artifact:
        """Store a live output (slot ``n % 2``) and emit ``session.snapshot`` covering frames up to ``seq``."""
        with self._lock:
            self.snapshots += 1
            number = self.snapshots
        artifact = self.host.store(f"live/{number % SNAPSHOT_SLOTS}-{name}", data, content_type)
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
