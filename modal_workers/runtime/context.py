"""What a workload sees: :class:`WorkerContext`, the stable API every workload is written against.

=============================================  =====================================================
``ctx.progress(fraction, message=None,``       report 0..1 (and the workload's figures);
``metrics=None)``                              throttled (≤ 4/s by default), monotonic; the first, 100 %
                                               and the last reported always go (a throttled
                                               report at the end of its interval)
``ctx.log(message, level="info")``             one ``job.log`` line
``ctx.artifact(name, data, content_type=None)``  store bytes or a local file (``Path``) under
                                               ``results/{tenant}/{job_id}/{name}`` with its
                                               content type (guessed from the name if omitted),
                                               size and sha256; emits ``job.artifact``
``ctx.store(name, data, content_type=None)``   the same, without the event
``ctx.input_path(name)``                       the job input ``name`` (``video``, ...) as a local
                                               file, downloaded on first use
``ctx.stage_input(name)``                      a previous stage's artifact ``name`` (``colmap/x.json``)
                                               as a local file, downloaded on first use
``ctx.load_stored(name)``                      the bytes this job stored as ``name`` (any attempt,
                                               e.g. a checkpoint), or ``None``
``ctx.recording(session_id)``                  this tenant's session's recording: its manifest and
                                               a reader of the copies it names, or ``None``
``ctx.work_dir``                               a temporary folder for outputs (made on first use),
                                               removed after the run
``ctx.cancelled`` / ``ctx.check_cancelled()``  whether the job's cancel was seen (or the attempt
                                               was dispatched again elsewhere) / raise
                                               :class:`CancelledError` if so
``ctx.spec`` · ``ctx.request`` · ``ctx.attempt`` · ``ctx.inputs``  the spec, the run request, the
                                               attempt number, the previous stage's artifacts
``ctx.session``                                a live session's input and outputs
                                               (:mod:`modal_workers.runtime.live_session`), else ``None``
=============================================  =====================================================

Every method may be called from any thread of the workload. Sending the run's events (fenced by its
attempt) and the ones the runtime sends itself: :mod:`modal_workers.runtime.attempt_events`.
"""

from __future__ import annotations

import hashlib
import mimetypes
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from contracts.events import jobs as je
from contracts.events.registry import EventType
from contracts.job_parts import Artifact
from contracts.recordings.manifest import RecordingManifest
from contracts.runs import RunRequest
from contracts.specs.job_inputs import InputRef
from modal_workers.runtime import inputs as runtime_io
from modal_workers.runtime.attempt_events import AttemptEvents, RunHost
from modal_workers.runtime.progress import ProgressThrottle
from services.common.recordings import StoredRecording
from services.common.storage import result_key


class CancelledError(Exception):
    """Raised by :meth:`WorkerContext.check_cancelled` once the job's cancel was requested."""


def guess_content_type(name: str) -> str:
    """The media type of an artifact name (``application/octet-stream`` when unknown)."""
    if name.endswith(".json"):
        return "application/json"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class WorkerContext(AttemptEvents):
    """One run's view of the runtime: inputs, reports, artifacts, cancellation."""

    def __init__(self, runtime: RunHost, request: RunRequest) -> None:
        super().__init__(runtime, request)
        self._work_dir: Path | None = None
        self._work_dir_lock = threading.Lock()
        self.spec: Any = None
        self.artifacts: list[Artifact] = []
        self._sent_fraction = -1.0
        self._progress = ProgressThrottle(self._send_progress, request.progress_min_interval_s)
        self.session: Any = None
        """A live session's :class:`~modal_workers.runtime.live_session.LiveSession` during its run (else ``None``)."""
        self._inputs: dict[str, Path] = {}

    @property
    def work_dir(self) -> Path:
        """This run's temporary folder, made on first use (a run that needs none makes none)."""
        with self._work_dir_lock:
            if self._work_dir is None:
                self._work_dir = Path(tempfile.mkdtemp(prefix=f"gpurelay-{self.request.job_id}-"))
            return self._work_dir

    def remove_work_dir(self) -> None:
        """Remove the temporary folder, if the run made one (the runtime calls it after the run)."""
        with self._work_dir_lock:
            made, self._work_dir = self._work_dir, None
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)

    @property
    def attempt(self) -> int:
        """The attempt number (1 for the first)."""
        return self.request.attempt

    @property
    def inputs(self) -> tuple[Artifact, ...]:
        """The previous stage's artifacts (empty outside pipelines)."""
        return self.request.inputs

    @property
    def cancelled(self) -> bool:
        """Whether the job's cancel was requested (seen on NATS, or :meth:`cancel` was called)."""
        return self.cancel_event.is_set()

    def cancel(self) -> None:
        """Mark the run cancelled (the runtime's cancel watch calls this)."""
        self.cancel_event.set()

    def check_cancelled(self) -> None:
        """Raise :class:`CancelledError` if the job's cancel was requested; call it between steps."""
        if self.cancel_event.is_set():
            raise CancelledError(f"job {self.request.job_id} was canceled")

    def progress(self, fraction: float, message: str | None = None, metrics: dict[str, Any] | None = None) -> None:
        """Report how far this run is (0..1) and, optionally, the workload's figures (``metrics``, at
        most 32 JSON scalars); throttled to one per ``request.progress_min_interval_s`` (four a second
        by default; the latest report goes when its interval ends), monotonic per attempt."""
        self._progress.report(fraction, message, metrics)

    def flush_progress(self) -> None:
        """Send the last throttled progress report, if any (the runtime calls it at the end)."""
        self._progress.flush()

    def stop_progress(self) -> None:
        """Send no report from now on; the runtime calls it before the terminal event."""
        self._progress.stop()

    def _send_progress(self, fraction: float, message: str | None, metrics: dict[str, Any] | None) -> None:
        stage = self.request.stage
        overall = fraction if stage is None else stage.offset + stage.weight * fraction
        overall = max(self._sent_fraction, min(1.0, max(0.0, overall)))
        self._sent_fraction = overall
        payload = je.JobProgressPayload(
            fraction=overall, stage=stage.name if stage else None, message=message and message[:1000], metrics=metrics
        )
        self.emit(EventType.JOB_PROGRESS, payload)

    def log(self, message: str, level: Literal["debug", "info", "warning", "error"] = "info") -> None:
        """Send one log line as ``job.log``."""
        self.emit(EventType.JOB_LOG, je.JobLogPayload(level=level, message=message[:8000]))

    def artifact(self, name: str, data: bytes | Path | str, content_type: str | None = None) -> Artifact:
        """Store ``data`` (bytes, or a local file's path) as artifact ``name``; report ``job.artifact``."""
        self.flush_progress()  # a throttled report goes before the artifact, keeping the order
        req = self.request
        if req.stage is not None and req.stage.count > 1:
            name = f"{req.stage.name}/{name}"
        artifact = self.store(name, data, content_type)
        payload = je.JobArtifactPayload.model_validate(artifact.model_dump())
        self.emit(EventType.JOB_ARTIFACT, payload, f"art-{name}")
        self.artifacts.append(artifact)
        return artifact

    def store(self, name: str, data: bytes | Path | str, content_type: str | None = None) -> Artifact:
        """Store ``data`` under ``results/{tenant}/{job_id}/{name}`` with its type, size and sha256; no event
        (a live session's snapshots announce themselves with their own). :class:`CancelledError` instead
        once the attempt is known to be superseded."""
        req = self.request
        if self.superseded:  # the key is the job's, not the attempt's: the later attempt's copy stays
            raise CancelledError(f"attempt {req.attempt} of job {req.job_id} was dispatched again")
        content_type = content_type or guess_content_type(name)
        key = result_key(req.storage_prefix, req.tenant, req.job_id, name)
        body: bytes | Path = Path(data) if isinstance(data, str) else data
        if isinstance(body, Path):
            size, sha256 = runtime_io.file_digest(body)
        else:
            size, sha256 = len(body), hashlib.sha256(body).hexdigest()
        if self._runtime.storage is not None:
            self._runtime.call(self._runtime.storage.put(key, body, content_type), timeout=3600)
        return Artifact(name=name, key=key, content_type=content_type, size=size, sha256=sha256)

    def input_path(self, name: str) -> Path:
        """Job input ``name`` as a local file (downloaded once, size- and time-bounded)."""
        if name in self._inputs:
            return self._inputs[name]
        refs: dict[str, InputRef] = self.spec.inputs.refs() if self.spec is not None else {}
        if name not in refs:
            raise runtime_io.InputError("input_missing", f"the job has no input {name!r}.")
        rt, req = self._runtime, self.request
        coro = runtime_io.download_input(
            rt.storage, req.storage_prefix, req.tenant, refs[name], self.work_dir, name,
            max_bytes=rt.max_input_bytes,
        )  # fmt: skip
        try:
            path: Path = rt.call(coro, timeout=rt.input_timeout_s)
        except TimeoutError as exc:
            raise runtime_io.InputError("input_timeout", f"input {name!r} took too long to download.") from exc
        self._inputs[name] = path
        return path

    def stage_input(self, name: str) -> Path:
        """The previous stage's artifact ``name`` (in :attr:`inputs`) as a local file, downloaded once."""
        if name in self._inputs:
            return self._inputs[name]
        found = next((a for a in self.inputs if a.name == name), None)
        if found is None or self._runtime.storage is None:
            raise runtime_io.InputError("input_missing", f"the previous stage left no artifact {name!r}.")
        target = self.work_dir / "stage-inputs" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        coro = runtime_io.download_key(self._runtime.storage, found.key, target, self._runtime.max_input_bytes)
        self._inputs[name] = path = self._runtime.call(coro, timeout=self._runtime.input_timeout_s)
        return path  # type: ignore[no-any-return]

    def load_stored(self, name: str) -> bytes | None:
        """What this job stored as ``name`` (:meth:`store`, any attempt), or ``None`` if nothing."""
        req = self.request
        if self._runtime.storage is None:
            return None
        key = result_key(req.storage_prefix, req.tenant, req.job_id, name)
        return self._runtime.call(runtime_io.read_if_present(self._runtime.storage, key), timeout=600)  # type: ignore[no-any-return]

    def recording(self, session_id: str) -> tuple[RecordingManifest, Callable[[str], bytes]] | None:
        """Session ``session_id``'s recording (of this job's tenant) and ``read(key)`` for the copies it
        names; ``None`` when it has none. Raises :class:`~services.common.recordings.RecordingUnreadableError`."""
        rt, req = self._runtime, self.request
        if rt.storage is None:
            return None
        stored = StoredRecording(rt.storage, req.storage_prefix, req.tenant, session_id)
        manifest = rt.call(stored.manifest(), timeout=rt.input_timeout_s)
        if manifest is None:
            return None
        return manifest, lambda key: rt.call(stored.read(key), timeout=rt.input_timeout_s)
