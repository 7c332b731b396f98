"""The worker runtime (minimal): runs a workload and turns what it reports into job events.

A workload is a function ``(spec, ctx) -> result``: ``spec`` is the job's validated spec, ``ctx``
a :class:`WorkerContext` through which it reports progress, log lines and artifacts; it returns
its result as a JSON-able dict (or ``None``). :class:`WorkerRuntime` wraps it with ``job.started``,
a periodic ``job.heartbeat``, and ``job.succeeded`` or ``job.failed``, and classifies errors: a
:class:`PermanentError` (bad input: a code and a message a user can act on) fails the job at once;
anything else is retryable, and the dispatcher decides whether another attempt follows.

Events go to an :class:`EventSink` (NATS directly in the local pool) from an event loop in a
background thread, one at a time and in order; terminal events are sent before :meth:`run`
returns. Ids of once-only events are deterministic (``{job}-a{n}-started``), so a resend is
stored once. In a pipeline stage the runtime scales progress into the stage's share, prefixes
artifact names with the stage's name and leaves ``job.succeeded`` to the dispatcher.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from contracts import job_events as je
from contracts.envelope import EventEnvelope
from contracts.events import EventType, job_event_name, make_event
from contracts.job_record import Artifact, JobError
from contracts.job_specs import JobSpec, parse_job_spec
from services.common.storage import Storage, result_key

Workload = Callable[[Any, "WorkerContext"], dict[str, Any] | None]
PROGRESS_MIN_INTERVAL_S = 0.1
"""At most ten progress events a second per job (the first and the last always go)."""


class PermanentError(Exception):
    """A failure another attempt cannot fix (bad input): ``code`` and a user-facing ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class StagePlan(BaseModel):
    """Which pipeline stage a run is, and its share of the overall progress."""

    model_config = ConfigDict(frozen=True)

    name: str
    index: int
    count: int
    offset: float = 0.0
    weight: float = 1.0


class RunRequest(BaseModel):
    """One attempt (or one stage of it) to run."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    job_id: str
    kind: str
    attempt: int
    spec: dict[str, Any]
    function: str = Field(description="module:function (local) or the Modal function name.")
    inputs: tuple[Artifact, ...] = Field(default=(), description="The previous stage's artifacts.")
    stage: StagePlan | None = None
    worker: str = "worker"
    heartbeat_interval_s: float = 10.0
    storage_prefix: str = ""


class Outcome(BaseModel):
    """How a run ended, reported back to the dispatcher."""

    status: Literal["succeeded", "permanent", "retryable"]
    result: dict[str, Any] = Field(default_factory=dict)
    artifacts: tuple[Artifact, ...] = ()
    error: JobError | None = None


class EventSink(Protocol):
    """Where events go (NATS, or the gateway's ingest route)."""

    async def send(self, subject_event: str, event: EventEnvelope) -> None:
        """Store ``event`` (``subject_event`` is the last subject token, e.g. ``progress``)."""


class WorkerContext:
    """What a workload sees: its inputs, and ways to report progress, log lines and artifacts."""

    def __init__(self, runtime: WorkerRuntime, request: RunRequest, spec: JobSpec) -> None:
        self._runtime, self.request, self.spec = runtime, request, spec
        self._last_progress = 0.0

    @property
    def attempt(self) -> int:
        """The attempt number (1 for the first)."""
        return self.request.attempt

    @property
    def inputs(self) -> tuple[Artifact, ...]:
        """The previous stage's artifacts (empty outside pipelines)."""
        return self.request.inputs

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far this run is (0..1); throttled, monotonic per attempt."""
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_progress < PROGRESS_MIN_INTERVAL_S:
            return
        self._last_progress = now
        stage = self.request.stage
        overall = fraction if stage is None else stage.offset + stage.weight * fraction
        payload = je.JobProgressPayload(
            fraction=min(1.0, max(0.0, overall)), stage=stage.name if stage else None, message=message
        )
        self._runtime.emit(self.request, EventType.JOB_PROGRESS, payload)

    def log(self, message: str, level: Literal["debug", "info", "warning", "error"] = "info") -> None:
        """Send one log line as ``job.log``."""
        self._runtime.emit(self.request, EventType.JOB_LOG, je.JobLogPayload(level=level, message=message))

    def artifact(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> Artifact:
        """Store ``data`` under the job's results and report it as ``job.artifact``."""
        return self._runtime.store_artifact(self.request, name, data, content_type)


class WorkerRuntime:
    """Runs workloads in the calling thread, events from a loop in a background thread."""

    def __init__(
        self, sink_factory: Callable[[], Awaitable[EventSink]], storage: Callable[[], Storage] | None = None
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="worker-events", daemon=True)
        self._thread.start()
        self._sink: EventSink = self._call(sink_factory())
        self._storage = self._call(self._make_storage(storage)) if storage else None
        self._lock = asyncio.Lock()

    @staticmethod
    async def _make_storage(factory: Callable[[], Storage]) -> Storage:
        return factory()

    def _call(self, coro: Awaitable[Any], timeout: float | None = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(_as_coro(coro), self._loop).result(timeout)

    async def _send(self, subject_event: str, event: EventEnvelope) -> None:
        async with self._lock:  # one at a time, in order
            for delay in (0.05, 0.2, 1.0, None):
                try:
                    await self._sink.send(subject_event, event)
                    return
                except Exception:
                    if delay is None:
                        raise
                    await asyncio.sleep(delay)

    def emit(
        self, request: RunRequest, type_: EventType, payload: BaseModel, event_id: str | None = None
    ) -> Future[None]:
        """Queue one event of ``request``'s attempt; the future completes once it is stored."""
        event = make_event(
            type_,
            payload,
            tenant=request.tenant,
            source=f"worker/{request.kind}",
            job_id=request.job_id,
            kind=request.kind,
            attempt=request.attempt,
            event_id=event_id,
        )
        return asyncio.run_coroutine_threadsafe(self._send(job_event_name(type_), event), self._loop)

    def store_artifact(self, request: RunRequest, name: str, data: bytes, content_type: str) -> Artifact:
        """Put ``data`` in storage and emit ``job.artifact`` (names get a stage prefix in pipelines)."""
        if request.stage is not None and request.stage.count > 1:
            name = f"{request.stage.name}/{name}"
        key = result_key(request.storage_prefix, request.tenant, request.job_id, name)
        if self._storage is not None:
            self._call(self._storage.put(key, data, content_type))
        artifact = Artifact(name=name, key=key, content_type=content_type, size=len(data))
        payload = je.JobArtifactPayload.model_validate(artifact.model_dump())
        self.emit(request, EventType.JOB_ARTIFACT, payload, f"{request.job_id}-a{request.attempt}-art-{name}")
        return artifact

    def _heartbeats(self, request: RunRequest, stop: threading.Event) -> None:
        while not stop.wait(request.heartbeat_interval_s):
            self.emit(request, EventType.JOB_HEARTBEAT, je.JobHeartbeatPayload(worker=request.worker))

    def run(self, workload: Workload, request: RunRequest) -> Outcome:
        """Run ``workload`` for ``request`` with started/heartbeat/terminal events; never raises."""
        prefix = f"{request.job_id}-a{request.attempt}"
        started_id = prefix + (f"-s{request.stage.index}" if request.stage else "") + "-started"
        started = je.JobStartedPayload(worker=request.worker)
        self.emit(request, EventType.JOB_STARTED, started, started_id).result(30)
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeats, args=(request, stop), daemon=True)
        beat.start()
        artifacts: list[Artifact] = []
        try:
            spec = parse_job_spec(request.spec)
            ctx = WorkerContext(self, request, spec)
            original = ctx.artifact

            def recording(name: str, data: bytes, content_type: str = "application/octet-stream") -> Artifact:
                artifacts.append(art := original(name, data, content_type))
                return art

            ctx.artifact = recording  # type: ignore[method-assign]
            result = workload(spec, ctx) or {}
            outcome = Outcome(status="succeeded", result=result, artifacts=tuple(artifacts))
        except PermanentError as exc:
            outcome = Outcome(status="permanent", error=JobError(code=exc.code, message=exc.message))
        except Exception as exc:  # noqa: BLE001 - anything but PermanentError is retryable
            message = "".join(traceback.format_exception_only(exc)).strip()[:4000]
            outcome = Outcome(
                status="retryable", error=JobError(code="worker_error", message=message, retryable=True)
            )
        finally:
            stop.set()
        if outcome.status == "succeeded" and request.stage is None:
            payload = je.JobSucceededPayload(result=outcome.result, artifacts=outcome.artifacts)
            self.emit(request, EventType.JOB_SUCCEEDED, payload, f"{prefix}-succeeded").result(30)
        elif outcome.status == "permanent" and outcome.error is not None:
            failed = je.JobFailedPayload(error=outcome.error)
            self.emit(request, EventType.JOB_FAILED, failed, f"{prefix}-failed").result(30)
        return outcome

    def close(self) -> None:
        """Stop the event loop thread (pending events are sent first)."""
        close = getattr(self._sink, "close", None)
        if close is not None:
            self._call(close(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


async def _as_coro(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
