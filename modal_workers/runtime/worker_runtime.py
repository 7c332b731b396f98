"""The worker runtime: runs a workload and turns what it reports into job events.

A workload is a function ``(spec, ctx)``, named ``module:function`` in a
:class:`~contracts.runs.RunRequest` (:func:`load_workload`; one that cannot be imported fails the
job with ``workload_missing``): ``spec`` is the job's validated spec, ``ctx`` a
:class:`WorkerContext`. It reports through ``ctx`` (``progress``, ``log``, ``artifact``) or by
*yielding* :class:`Progress`, :class:`Log`, :class:`ArtifactOut` and :class:`Result` items (a
generator workload), and returns its result as a JSON-able dict (or ``None``). Its inputs come
from ``ctx.input_path(name)`` (downloaded on first use into ``ctx.work_dir``, removed after the
run); ``ctx.check_cancelled()`` raises :class:`CancelledError` once the job's cancel was seen.

:class:`WorkerRuntime` wraps it: ``job.started``, a ``job.heartbeat`` every
``request.heartbeat_interval_s`` (a timer on the runtime's loop), then ``job.succeeded`` or
``job.failed``. Progress is throttled
to at most ten events a second (the first, the 100 % one and the last reported always go: a
throttled report when its interval ends; none after the terminal event).
Errors are classified: :class:`PermanentError` (bad input: a code and a message a user can act
on) fails the job at once; anything else is retryable, and the dispatcher decides whether another
attempt follows (the :class:`~contracts.runs.Outcome`). Events go to an
:class:`~modal_workers.runtime.sinks.EventSink` from an event loop in a background thread, one
at a time and in order; every id is in the attempt's worker namespace (``w-{job}-a{n}-...``,
:mod:`contracts.event_ids`, required by the ingest route), once-only events have deterministic ids
(``w-{job}-a{n}-started``) and every resend keeps its id, so the log stores it once. In a pipeline
stage progress is scaled into the stage's share, artifact names get the stage's prefix and
``job.succeeded`` is the dispatcher's.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from pydantic import ValidationError

from contracts.envelope import EventEnvelope
from contracts.job_parts import JobError
from contracts.runs import PROGRESS_MIN_INTERVAL_S, Outcome, RunRequest
from contracts.specs.jobs import parse_job_spec
from modal_workers.runtime import inputs as runtime_io
from modal_workers.runtime import sinks as runtime_sinks
from modal_workers.runtime.context import CancelledError, WorkerContext, guess_content_type
from modal_workers.runtime.errors import PermanentError
from modal_workers.runtime.session_resume import is_resumable
from modal_workers.runtime.session_run import live_session
from modal_workers.runtime.sinks import EventSink
from modal_workers.runtime.sinks.attempt_fence import AttemptSuperseded
from modal_workers.runtime.yields import ArtifactOut, Log, Progress, Result, drive
from services.common import event_loop
from services.common.observability import tracing

__all__ = [
    "PROGRESS_MIN_INTERVAL_S",
    "ArtifactOut",
    "CancelledError",
    "EventSink",
    "Log",
    "PermanentError",
    "Progress",
    "Result",
    "WorkerContext",
    "WorkerRuntime",
    "guess_content_type",
    "import_ref",
    "load_workload",
]

log = logging.getLogger(__name__)
Workload = Callable[[Any, WorkerContext], "dict[str, Any] | Iterator[Any] | None"]


def import_ref(ref: str) -> Any:
    """The object named by ``module:attribute``."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


def load_workload(ref: str, cache: dict[str, Workload] | None = None) -> Workload:
    """The workload ``ref`` (``module:function``, kept in ``cache``), or one that fails permanently.

    A workload that cannot be imported is not a crash of the worker: its run fails the job with
    ``workload_missing``, which no other attempt can fix.
    """
    if cache is not None and ref in cache:
        return cache[ref]
    try:
        workload: Workload = import_ref(ref)
    except (ImportError, AttributeError) as exc:
        return _missing(ref, exc)
    if cache is not None:
        cache[ref] = workload
    return workload


def _missing(ref: str, exc: Exception) -> Workload:
    message = f"the workload {ref!r} cannot be imported: {exc}"

    def fail(spec: Any, ctx: WorkerContext) -> None:
        raise PermanentError("workload_missing", message)

    return fail


class WorkerRuntime:
    """Runs workloads in the calling thread; events and storage I/O on a loop in a background thread.

    ``max_input_bytes`` caps each downloaded input and ``input_timeout_s`` its download time;
    ``cancel_grace_s`` is how long a run that stopped on a cancel waits for the dispatcher to end
    it (it kills the process group, or cancels the Modal call, and publishes ``job.canceled``)
    before it reports back as retryable. ``on_superseded`` is told when a run finds its attempt
    dispatched again (:meth:`superseded`).
    """

    def __init__(
        self,
        sink_factory: Callable[[], Awaitable[EventSink]],
        storage: Callable[[], Any] | None = None,
        *,
        max_input_bytes: int = runtime_io.DEFAULT_MAX_INPUT_BYTES,
        input_timeout_s: float = 900.0,
        cancel_grace_s: float = 30.0,
        on_superseded: Callable[[RunRequest], None] | None = None,
    ) -> None:
        self.max_input_bytes, self.input_timeout_s = max_input_bytes, input_timeout_s
        self.cancel_grace_s, self.on_superseded = cancel_grace_s, on_superseded
        self.loop = event_loop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="worker-events", daemon=True)
        self._thread.start()
        self.sink: EventSink = self.call(sink_factory())
        self.storage = self.call(_made(storage)) if storage else None
        self._lock = asyncio.Lock()
        self._trace: Context | None = None

    def call(self, coro: Awaitable[Any], timeout: float | None = 60.0) -> Any:
        """Run ``coro`` on the runtime's loop and wait for its value (``timeout`` seconds at most)."""
        return asyncio.run_coroutine_threadsafe(runtime_io.as_coro(coro), self.loop).result(timeout)

    async def _send(
        self, subject_event: str, event: EventEnvelope, trace: Context | None = None, dispatched_seq: int = 0
    ) -> None:
        token = otel_context.attach(trace) if trace is not None else None  # the sink publishes in the run's span
        try:
            async with self._lock:  # one at a time, in order
                for delay in (0.05, 0.2, 1.0, None):
                    try:
                        await self.sink.send(subject_event, event, dispatched_seq=dispatched_seq)
                        return
                    except AttemptSuperseded:  # another try cannot be stored either
                        raise
                    except Exception:
                        if delay is None:
                            log.exception("event %s (%s) could not be sent", event.id, event.type)
                            raise
                        await asyncio.sleep(delay)
        finally:
            if token is not None:
                otel_context.detach(token)

    def send(self, subject_event: str, event: EventEnvelope, dispatched_seq: int = 0) -> Any:
        """Queue ``event`` for the sink (fenced by ``dispatched_seq``: :meth:`EventSink.send`); the returned
        future completes once it is stored."""
        coro = self._send(subject_event, event, self._trace, dispatched_seq)
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def superseded(self, request: RunRequest) -> None:
        """The run of ``request`` found its attempt dispatched again: told to ``on_superseded`` (the local
        pool's process ends itself if the workload does not stop)."""
        if self.on_superseded is not None:
            self.on_superseded(request)

    def run(self, workload: Workload, request: RunRequest) -> Outcome:
        """Run ``workload`` for ``request`` in a span of the job's trace (``request.trace``): every event
        it sends, from any thread, carries that span's context; never raises."""
        attributes = {"job.id": request.job_id, "job.kind": request.kind, "job.attempt": request.attempt}
        with tracing.span(f"run {request.kind}", tracing.extract(request.trace), attributes=attributes):
            self._trace = otel_context.get_current()
            try:
                return self._run(workload, request)
            finally:
                self._trace = None

    def _run(self, workload: Workload, request: RunRequest) -> Outcome:
        ctx = WorkerContext(self, request)
        watch = None
        try:
            watch = self.call(self._begin(ctx))
            beat = asyncio.run_coroutine_threadsafe(self._heartbeats(ctx), self.loop)
            try:
                outcome = self._outcome(workload, ctx)
            finally:
                beat.cancel()
                ctx.stop_progress()
            _settle(ctx.finished(outcome))
            if not ctx.settle_sent(60.0):  # a stage's or a retryable run's events land before what follows
                log.warning("job %s: events still unsent after 60 s; the outcome goes back", request.job_id)
            if ctx.superseded:  # whatever the workload made of it, none of its ending was stored
                outcome = superseded(request)
        except AttemptSuperseded:  # its job.started or its end refused: the job was dispatched again
            outcome = superseded(request)
        except Exception:  # the sink is down: the outcome still goes back
            log.exception("job %s: events could not be delivered", request.job_id)
            outcome = Outcome(
                status="retryable",
                error=JobError(code="events_undeliverable", message="events could not be sent", retryable=True),
            )
        finally:
            if watch is not None:
                self._unwatch(watch)
            ctx.remove_work_dir()
        return outcome

    def _outcome(self, workload: Workload, ctx: WorkerContext) -> Outcome:
        """Run the workload and classify how it ended."""
        try:
            ctx.spec = spec = parse_job_spec(ctx.request.spec)
            with live_session(self, ctx, is_resumable(workload)):
                result = drive(workload, spec, ctx)
            ctx.flush_progress()
        except (PermanentError, runtime_io.InputError) as exc:
            return Outcome(status="permanent", error=JobError(code=exc.code, message=exc.message))
        except ValidationError as exc:  # the spec itself is wrong: no attempt can fix it
            return Outcome(status="permanent", error=JobError(code="invalid_spec", message=str(exc)[:4000]))
        except CancelledError:
            if ctx.superseded:  # no dispatcher is left to end this run: it ends now
                return superseded(ctx.request)
            time.sleep(self.cancel_grace_s)  # the dispatcher ends the run meanwhile
            error = JobError(code="canceled", message="the job was canceled", retryable=True)
            return Outcome(status="retryable", error=error)
        except Exception as exc:  # noqa: BLE001 - anything but PermanentError is retryable
            message = "".join(traceback.format_exception_only(exc)).strip()[:4000]
            return Outcome(status="retryable", error=JobError(code="worker_error", message=message, retryable=True))
        try:
            return Outcome(status="succeeded", result=result, artifacts=tuple(ctx.artifacts))
        except ValidationError as exc:  # e.g. a NaN: JSON has none, and no contract takes one
            return Outcome(status="permanent", error=JobError(code="invalid_result", message=str(exc)[:4000]))

    async def _begin(self, ctx: WorkerContext) -> Any:
        """Watch the job's cancel, then send ``job.started`` and wait until it is stored: the sink
        handles its messages in order, so its ack also means the watch is in force. The watch (best
        effort: ``None`` without one)."""
        req = ctx.request
        try:
            watch = await runtime_sinks.watch_cancel(self.sink, req.tenant, req.job_id, ctx.cancel_event.set)
        except Exception:  # the cancel watch is best effort
            log.warning("job %s: no cancel watch", req.job_id, exc_info=True)
            watch = None
        try:
            await asyncio.wrap_future(ctx.started())
        except BaseException:  # not started (superseded, events undeliverable): no run to watch
            if watch is not None:
                self._unwatch(watch)
            raise
        return watch

    async def _heartbeats(self, ctx: WorkerContext) -> None:
        """``job.heartbeat`` every ``heartbeat_interval_s`` until cancelled (on the runtime's loop)."""
        while True:
            await asyncio.sleep(ctx.request.heartbeat_interval_s)
            ctx.heartbeat()

    def _unwatch(self, subscription: Any) -> None:
        """End the cancel watch (on the loop, not waited for: the connection may be gone already)."""
        asyncio.run_coroutine_threadsafe(subscription.unsubscribe(), self.loop)

    def close(self) -> None:
        """Close the sink and storage, then stop the event loop thread."""
        for closer in (getattr(self.sink, "close", None), getattr(self.storage, "aclose", None)):
            if closer is not None:
                try:
                    self.call(closer(), timeout=10)
                except Exception:  # closing is best effort
                    log.debug("close failed", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


def superseded(request: RunRequest) -> Outcome:
    """The outcome of a run whose attempt was dispatched again: nothing more of it was stored."""
    message = f"attempt {request.attempt} was dispatched again elsewhere; this run stopped"
    return Outcome(status="retryable", error=JobError(code="superseded", message=message, retryable=True))


def _settle(future: Any, timeout: float = 60.0) -> None:
    if future is not None:
        future.result(timeout)


async def _made(factory: Callable[[], Any]) -> Any:
    return factory()
