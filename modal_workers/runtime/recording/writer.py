"""A live session's recording, written by its worker as the session runs (:class:`RecordingWriter`).

:class:`~modal_workers.runtime.live_session.LiveSession` hands the writer each frame it gave the
workload (with its matched joint sample), each reset and requested stop, and each result, alert and
snapshot the workload emitted. Frames are stored one object each as they come (at most
``pending_writes`` being stored at once: more make the workload wait), so the recording never holds
an image in memory; the entries go to index files of :data:`~contracts.recordings.layout.INDEX_FRAMES`
and the head (``recording/manifest.json``) is rewritten at most every ``flush_every_s`` and when the
session ends (:mod:`contracts.recordings.layout`). A worker that takes the session over
(:meth:`RecordingWriter.resume`) goes on from what the last head says.

Bounded: at most :data:`~contracts.recordings.manifest.MAX_RECORDED_FRAMES` frames (later ones are counted
in ``frames_left_out``) and :data:`~contracts.recordings.manifest.MAX_RECORDED_EVENTS` of each other list; a
snapshot is kept at most every ``snapshot_every_s`` (the first and the last always).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal, Protocol

from contracts.events.sessions import SessionAlertPayload, SessionResultPayload
from contracts.recordings.layout import (
    HEAD_NAME,
    INDEX_FRAMES,
    RecordingHead,
    frame_name,
    index_lines,
    index_name,
    parse_index,
    snapshot_name,
)
from contracts.recordings.manifest import (
    DEFAULT_CAMERA,
    MAX_RECORDED_EVENTS,
    MAX_RECORDED_FRAMES,
    MatchedJoints,
    RecordedAlert,
    RecordedControl,
    RecordedFrame,
    RecordedResult,
    RecordedSnapshot,
    RecordingManifest,
)
from modal_workers.runtime.recording.settings import RecordingSettings
from modal_workers.runtime.session_frames import SessionFrame

FLUSH_TIMEOUT_S = 120.0


class BlobStore(Protocol):
    """Stores bytes under a name in the session's results; the future completes once stored."""

    def __call__(self, name: str, data: bytes, content_type: str) -> Future[Any]: ...


class RecordingWriter:
    """Appends to one session's recording and stores it (see the module docstring); thread-safe."""

    def __init__(
        self,
        store: BlobStore,
        manifest: RecordingManifest,
        settings: RecordingSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.settings, self.clock = store, settings or RecordingSettings(), clock
        self._lock = threading.RLock()
        self._pending: deque[Future[Any]] = deque()
        self.head = manifest.model_copy(update={"frames": [], "started_at": manifest.started_at or clock()})
        self._index: list[RecordedFrame] = []
        self.index_files = self.frame_count = 0
        self.last_seq = 0
        self._kept_snapshot_at = float("-inf")
        self._unkept: tuple[bytes, int, str, str, float] | None = None
        self._flushed_at = clock()
        self._dirty = True

    # -- what the session hands over ----------------------------------------------------------------
    def frames(self, frames: list[SessionFrame]) -> None:
        """Store and list each frame the workload took (a seq not above the last is a repeat: skipped)."""
        with self._lock:
            for frame in frames:
                if frame.seq <= self.last_seq:
                    continue
                self.last_seq = frame.seq
                if self.frame_count >= MAX_RECORDED_FRAMES:
                    self.head = self.head.model_copy(update={"frames_left_out": self.head.frames_left_out + 1})
                    continue
                self._frame(frame)
            self._changed()

    def _frame(self, frame: SessionFrame) -> None:
        content_type = "image/png" if frame.content_type == "image/png" else "image/jpeg"
        name = frame_name(DEFAULT_CAMERA, frame.seq, content_type)
        self._put(name, frame.data, content_type)
        joints = None
        if frame.joints is not None:
            joints = MatchedJoints(ts=frame.ts if frame.joints_ts is None else frame.joints_ts, angles=frame.joints)
        entry = RecordedFrame(
            seq=frame.seq, ts=frame.ts, content_type=content_type, key=name, joints=joints, pose=frame.pose,
            processed_at=self.clock(),
        )  # fmt: skip
        self._index.append(entry)
        self.frame_count += 1
        if len(self._index) == INDEX_FRAMES:
            self.index_files += 1
            self._put(index_name(self.index_files), index_lines(self._index), "application/x-ndjson")
            self._index = []

    def control(self, action: Literal["stop", "reset"], reason: str | None = None) -> None:
        """A reset, or a stop that was asked for."""
        self._append("controls", RecordedControl(ts=self.clock(), action=action, reason=reason))

    def result(self, payload: SessionResultPayload) -> None:
        """A ``session.result`` the workload emitted; a chunk listed already is a resumed attempt's repeat."""
        with self._lock:
            if all(kept.chunk != payload.chunk for kept in self.head.results):
                self._append("results", RecordedResult(ts=self.clock(), **payload.model_dump()))

    def alert(self, payload: SessionAlertPayload) -> None:
        """A ``session.alert`` the workload emitted; one listed for its chunk and pattern is a repeat."""
        with self._lock:
            if all((kept.chunk, kept.pattern) != (payload.chunk, payload.pattern) for kept in self.head.alerts):
                self._append("alerts", RecordedAlert(ts=self.clock(), **payload.model_dump()))

    def snapshot(self, data: bytes, *, seq: int, name: str, content_type: str) -> None:
        """A live output: kept when none was for ``snapshot_every_s`` (the last one is kept at the end)."""
        now = self.clock()
        with self._lock:
            if now - self._kept_snapshot_at < self.settings.snapshot_every_s:
                self._unkept = (data, seq, name, content_type, now)
                return
            self._keep_snapshot(data, seq, name, content_type, now)

    def _keep_snapshot(self, data: bytes, seq: int, name: str, content_type: str, ts: float) -> None:
        self._kept_snapshot_at, self._unkept = ts, None
        if len(self.head.snapshots) >= MAX_RECORDED_EVENTS:
            return
        key = snapshot_name(len(self.head.snapshots) + 1, name)
        self._put(key, data, content_type)
        kept = RecordedSnapshot(ts=ts, seq=seq, name=name, content_type=content_type, key=key)
        self.head = self.head.model_copy(update={"snapshots": [*self.head.snapshots, kept]})
        self._changed()

    def _append(self, field: str, item: Any) -> None:
        with self._lock:
            items = getattr(self.head, field)
            if len(items) < MAX_RECORDED_EVENTS:
                self.head = self.head.model_copy(update={field: [*items, item]})
            self._changed()

    # -- storing -----------------------------------------------------------------------------------
    def _put(self, name: str, data: bytes, content_type: str) -> None:
        while len(self._pending) >= self.settings.pending_writes:
            self._pending.popleft().result(FLUSH_TIMEOUT_S)
        self._pending.append(self.store(name, data, content_type))

    def _changed(self) -> None:
        self._dirty = True
        if self.clock() - self._flushed_at >= self.settings.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Wait until every stored copy is in, then write the open index file and the head."""
        with self._lock:
            if self._index:
                self._put(index_name(self.index_files + 1), index_lines(self._index), "application/x-ndjson")
            files = self.index_files + (1 if self._index else 0)
            head = RecordingHead(manifest=self.head, frame_count=self.frame_count, index_files=files)
            while self._pending:
                self._pending.popleft().result(FLUSH_TIMEOUT_S)
            self.store(HEAD_NAME, head.model_dump_json().encode(), "application/json").result(FLUSH_TIMEOUT_S)
            self._flushed_at, self._dirty = self.clock(), False

    def close(self) -> RecordingManifest:
        """The session ended: keep the last snapshot, note the end, write everything; the head's manifest."""
        with self._lock:
            if self._unkept is not None:
                self._keep_snapshot(*self._unkept)
            self.head = self.head.model_copy(update={"ended_at": self.clock()})
            self.flush()
            return self.head

    def resume(self, head: RecordingHead, last_index: bytes | None) -> None:
        """Go on from a recording an earlier worker of this session wrote (its head and last index file)."""
        with self._lock:
            self.head = head.manifest.model_copy(update={"ended_at": None, "params": self.head.params})
            frames = parse_index(last_index) if last_index else []
            self.last_seq = frames[-1].seq if frames else 0
            partial = bool(frames) and len(frames) < INDEX_FRAMES
            self._index = frames if partial else []
            self.index_files = head.index_files - (1 if partial else 0)
            self.frame_count = head.frame_count
            if head.manifest.snapshots:
                self._kept_snapshot_at = head.manifest.snapshots[-1].ts
