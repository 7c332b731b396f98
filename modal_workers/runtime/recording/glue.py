"""One session run's recording and source, opened and closed by :mod:`modal_workers.runtime.session_run`.

:class:`RecordedRun` gives the :class:`~modal_workers.runtime.live_session.LiveSession` its recorder
(unless ``GPURELAY_RECORDING_ENABLED=false`` or the worker has no storage; a worker that takes the
session over goes on with the recording the last one left), opens the session's ``source`` (a bad
one fails the run now, with its code) and its feeder, which publishes through the run's sink
(``sink.open_session_source``). When the run ends the feeder stops and the recording is closed; a
replay that ended well then stores ``comparison.json`` (:mod:`modal_workers.runtime.recording.comparison`).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from typing import Any

from contracts.api.sessions import SessionEntry
from contracts.envelope import utc_now
from contracts.recordings.layout import HEAD_NAME, RecordingHead, index_name
from contracts.recordings.manifest import RecordingManifest
from contracts.specs.session_source import RecordingSource
from modal_workers.runtime.live_session import LiveSession
from modal_workers.runtime.recording.comparison import compare
from modal_workers.runtime.recording.feeder import Feeder
from modal_workers.runtime.recording.settings import RecordingSettings, SourceSettings
from modal_workers.runtime.recording.source import open_source
from modal_workers.runtime.recording.writer import RecordingWriter
from services.common.recordings import StoredRecording
from services.common.storage import result_key

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 600.0


class RecordedRun:
    """The recorder and feeder of one session run (either may be ``None``)."""

    def __init__(self, runtime: Any, ctx: Any, spec: Any, live: LiveSession) -> None:
        self.runtime, self.ctx, self.spec, self.live = runtime, ctx, spec, live
        self.recorder = live.recorder = self._recorder()
        self.feeder: Feeder | None = None
        if spec.source is not None:
            self.feeder = self._feeder()

    def _recorder(self) -> RecordingWriter | None:
        settings, storage, req = RecordingSettings(), self.runtime.storage, self.ctx.request
        if not settings.enabled or storage is None:
            return None

        def store(name: str, data: bytes, content_type: str) -> Future[Any]:
            key = result_key(req.storage_prefix, req.tenant, req.job_id, name)
            return asyncio.run_coroutine_threadsafe(storage.put(key, data, content_type), self.runtime.loop)

        source = self.spec.source
        manifest = RecordingManifest(
            session_id=req.job_id, kind=self.spec.kind, params=self.spec.params.model_dump(mode="json"),
            replay_of=source.session_id if isinstance(source, RecordingSource) else None,
        )  # fmt: skip
        writer = RecordingWriter(store, manifest, settings)
        if (head := self.ctx.load_stored(HEAD_NAME)) is not None:
            before = RecordingHead.model_validate_json(head)
            last = self.ctx.load_stored(index_name(before.index_files)) if before.index_files else None
            writer.resume(before, last)
        return writer

    def _feeder(self) -> Feeder:
        req, source, timeout = self.ctx.request, self.spec.source, SourceSettings().publish_timeout_s
        frames = open_source(self.runtime, self.ctx, source)
        entry = SessionEntry(
            id=req.job_id, tenant=req.tenant, kind=self.spec.kind, robot_id=req.job_id,
            created_at=req.created_at or utc_now(),
        )  # fmt: skip
        publisher = self.runtime.call(self.runtime.sink.open_session_source(req, entry))
        return Feeder(
            frames, publisher, lambda coro: self.runtime.call(coro, timeout), self.live.input,
            speed=source.speed, ahead=self.spec.params.frame_buffer, on_error=self.live.fail,
        )  # fmt: skip

    def start(self) -> None:
        """Start feeding (the session's feed is open)."""
        if self.feeder is not None:
            self.feeder.start()

    def finish(self, completed: bool) -> None:
        """The run ended (``completed``: the workload returned): stop feeding, close the recording, compare."""
        if self.feeder is not None:
            self.feeder.stop()
        if self.recorder is None:
            return
        try:
            self.recorder.close()
        except Exception as exc:  # the session's own outcome stands; the recording says what it holds
            log.warning("session %s: the recording was not closed", self.ctx.request.job_id, exc_info=True)
            self.ctx.log(f"the recording could not be completed: {exc!r}", "error")
            return
        if completed and isinstance(self.spec.source, RecordingSource):
            try:
                self._compare(self.spec.source.session_id)
            except Exception:  # a comparison that fails does not fail the session
                log.warning("session %s: no comparison", self.ctx.request.job_id, exc_info=True)
                self.ctx.log("the comparison with the replayed session could not be made", "warning")

    def _compare(self, original_id: str) -> None:
        req, storage, call = self.ctx.request, self.runtime.storage, self.runtime.call
        original = StoredRecording(storage, req.storage_prefix, req.tenant, original_id)
        own = StoredRecording(storage, req.storage_prefix, req.tenant, req.job_id)
        before, after = call(original.manifest(), READ_TIMEOUT_S), call(own.manifest(), READ_TIMEOUT_S)
        if before is None or after is None:
            return
        comparison = compare(
            before, lambda name: call(original.read(name), READ_TIMEOUT_S),
            after, lambda name: call(own.read(name), READ_TIMEOUT_S), self.live.scorer,
        )  # fmt: skip
        self.ctx.artifact("comparison.json", comparison.model_dump_json(indent=1).encode(), "application/json")
