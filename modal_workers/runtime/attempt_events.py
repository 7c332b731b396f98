"""One attempt's events as its worker sends them: :class:`AttemptEvents`, which the workload's context extends.

Every event of a run goes through :meth:`AttemptEvents.emit`, fenced by the attempt's ``job.dispatched``; the
first one refused as superseded cancels the run, and nothing more of it is sent. The events the runtime sends
itself (``job.started``, heartbeats, the terminal event) and its wait for all of them to be stored before the
outcome goes back are here too; what a workload calls is :class:`~modal_workers.runtime.context.WorkerContext`.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Awaitable
from typing import Any, Protocol

from pydantic import BaseModel

from contracts.envelope import EventEnvelope
from contracts.event_ids import worker_event_id
from contracts.events import jobs as je
from contracts.events.registry import EventType, job_event_name, make_event
from contracts.runs import Outcome, RunRequest
from modal_workers.runtime.sinks.attempt_fence import AttemptSuperseded


class RunHost(Protocol):
    """What a context needs of the runtime that runs it
    (:class:`~modal_workers.runtime.worker_runtime.WorkerRuntime`)."""

    storage: Any
    max_input_bytes: int
    input_timeout_s: float

    def call(self, coro: Awaitable[Any], timeout: float | None = 60.0) -> Any:
        """Run ``coro`` on the runtime's loop and wait for its value."""

    def send(self, subject_event: str, event: EventEnvelope, dispatched_seq: int = 0) -> Any:
        """Queue ``event`` for the sink (fenced by ``dispatched_seq``); a future that completes once it is
        stored."""

    def superseded(self, request: RunRequest) -> None:
        """Told once when the run of ``request`` finds its attempt dispatched again."""


class AttemptEvents:
    """The events of one run's attempt: sent through its runtime, fenced, and waited for at the end."""

    def __init__(self, runtime: RunHost, request: RunRequest) -> None:
        self._runtime, self.request = runtime, request
        self.cancel_event = threading.Event()
        self.superseded = False
        """Whether an event was refused because the job was dispatched again: the run is cancelled, and
        nothing more of it is sent (:mod:`~modal_workers.runtime.sinks.attempt_fence`)."""
        self._unsettled: set[Any] = set()
        self._unsettled_lock = threading.Lock()

    def emit(self, type_: EventType, payload: BaseModel, name: str | None = None) -> Any:
        """Queue one event of this attempt; a future that completes once it is stored.

        Its id is in the attempt's worker namespace (:func:`~contracts.event_ids.worker_event_id`):
        derived from ``name`` (deterministic, so a resend is stored once), else random. Every event is
        fenced by the attempt's ``job.dispatched`` (:attr:`~contracts.runs.RunRequest.dispatched_seq`):
        once one is refused as superseded, none is sent any more (a future already done, with ``None``).
        """
        if self.superseded:
            done: concurrent.futures.Future[Any] = concurrent.futures.Future()
            done.set_result(None)
            return done
        req = self.request
        event = make_event(
            type_, payload, tenant=req.tenant, source=f"worker/{req.kind}", job_id=req.job_id,
            kind=req.kind, attempt=req.attempt, event_id=worker_event_id(req.job_id, req.attempt, name),
        )  # fmt: skip
        future = self._runtime.send(job_event_name(type_), event, req.dispatched_seq)
        with self._unsettled_lock:
            self._unsettled.add(future)
        future.add_done_callback(self._settled)
        return future

    def _settled(self, future: Any) -> None:
        with self._unsettled_lock:
            self._unsettled.discard(future)
        if not future.cancelled() and isinstance(future.exception(), AttemptSuperseded) and not self.superseded:
            self.superseded = True
            self.cancel_event.set()  # a workload that checks stops; what it sends is dropped
            self._runtime.superseded(self.request)

    def settle_sent(self, timeout: float) -> bool:
        """Wait until every event this run sent is stored or given up (``timeout`` seconds at most); whether
        all were. The runtime calls it before the outcome goes back, so that no event of this attempt can
        be stored after what the dispatcher does next (the next stage's first event, ``job.retrying``)."""
        with self._unsettled_lock:
            pending = list(self._unsettled)
        if not pending:
            return True
        _, not_done = concurrent.futures.wait(pending, timeout=timeout)
        return not not_done

    def started(self) -> Any:
        """Emit ``job.started`` (one id per attempt and stage)."""
        stage = self.request.stage
        name = (f"s{stage.index}-" if stage else "") + "started"
        return self.emit(EventType.JOB_STARTED, je.JobStartedPayload(worker=self.request.worker), name)

    def heartbeat(self) -> Any:
        """Emit one ``job.heartbeat`` (the runtime does every ``heartbeat_interval_s``)."""
        return self.emit(EventType.JOB_HEARTBEAT, je.JobHeartbeatPayload(worker=self.request.worker))

    def finished(self, outcome: Outcome) -> Any:
        """Emit the terminal event the worker owns (none for stages and retryable errors)."""
        if outcome.status == "succeeded" and self.request.stage is None:
            payload: BaseModel = je.JobSucceededPayload(result=outcome.result, artifacts=outcome.artifacts)
            return self.emit(EventType.JOB_SUCCEEDED, payload, "succeeded")
        if outcome.status == "permanent" and outcome.error is not None:
            payload = je.JobFailedPayload(error=outcome.error)
            return self.emit(EventType.JOB_FAILED, payload, "failed")
        return None
