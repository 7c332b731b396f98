"""Scheduling test helpers: a backend that finishes runs at once (behind a gate), start order from events."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.js import JetStreamContext

from contracts.event_ids import worker_event_id
from contracts.events.jobs import JobSucceededPayload
from contracts.events.registry import EventType, make_event
from contracts.quotas import TenantQuota
from contracts.route_table import Route, Stage
from contracts.runs import Outcome, RunRequest
from contracts.streams import KV_QUOTAS, KV_TENANT_USAGE
from contracts.subjects import Namespace, Subjects
from services.common.nats.publish import publish_event
from services.common.quotas import QuotaBook
from services.dispatcher.running.backends import Announce, Launch
from services.dispatcher.service import Dispatcher
from tests.support.dispatcher import EventLog


class InstantBackend:
    """Stands in for the local pool: each run publishes the worker's ``job.succeeded`` after ``run_s``.

    ``gate`` holds every reservation until it is set, so a test can queue a backlog first.
    """

    name = "local"

    def __init__(
        self, js: JetStreamContext, subjects: Subjects, run_s: float = 0.0, tag: str = "", call_id: str = ""
    ) -> None:
        self.js, self.subjects, self.run_s, self.tag = js, subjects, run_s, tag
        self.call_id = call_id
        """Every launch's call id when set (one pool process running every run), else one per run."""
        self.canceled_calls: list[str] = []
        """The call ids :meth:`cancel_call` was asked to stop."""
        self.gate = asyncio.Event()
        self.finish = asyncio.Event()
        """Every run ends only once this is set (set from the start: a test may clear it)."""
        self.finish.set()
        self.tasks: set[asyncio.Task[Outcome]] = set()
        self.reserving = 0
        """Reservations asked for so far (a test can wait until one waits at the gate)."""
        self.runs: list[tuple[str, int]] = []
        """(job id, attempt) of every run this backend started."""
        self.announced = 0
        """Launches whose announcement has come back (stored, or refused as another's)."""

    async def reserve(self) -> None:
        """Wait for the gate."""
        self.reserving += 1
        await self.gate.wait()

    def release(self, reservation: Any) -> None:
        """Nothing to give back."""

    async def launch(
        self, reservation: Any, request: RunRequest, route: Route, stage: Stage, announce: Announce
    ) -> Launch:
        """Announce, then succeed after ``run_s`` as a worker would."""
        call_id = self.call_id or f"instant{self.tag}:{request.job_id}:{request.attempt}"
        try:
            await announce(call_id, None)
        finally:
            self.announced += 1
        self.runs.append((request.job_id, request.attempt))
        task = asyncio.create_task(self._run(request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

        async def cancel() -> None:
            task.cancel()

        return Launch(call_id, task, cancel)

    async def _run(self, request: RunRequest) -> Outcome:
        if self.run_s > 0:
            await asyncio.sleep(self.run_s)
        await self.finish.wait()
        event = make_event(
            EventType.JOB_SUCCEEDED, JobSucceededPayload(result={}), tenant=request.tenant, source="worker",
            job_id=request.job_id, kind=request.kind, attempt=request.attempt,
            event_id=worker_event_id(request.job_id, request.attempt, "succeeded"),
        )  # fmt: skip
        await publish_event(self.js, self.subjects.job_event(request.tenant, request.job_id, "succeeded"), event)
        return Outcome(status="succeeded")

    async def cancel_call(self, call_id: str, job_id: str = "", attempt: int = 0) -> None:
        """Nothing to cancel (the call id is noted)."""
        self.canceled_calls.append(call_id)

    async def close(self) -> None:
        """Cancel the runs still going."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def start_order(log: EventLog, jobs: list[str]) -> list[str]:
    """The jobs that were dispatched, in the order of their ``job.dispatched`` times."""
    dispatched = [(event.time, job) for job in jobs if (event := log.first(job, "job.dispatched")) is not None]
    return [job for _, job in sorted(dispatched)]


def count_dispatched(log: EventLog, jobs: list[str]) -> int:
    """How many of ``jobs`` were dispatched."""
    return sum(1 for job in jobs if log.first(job, "job.dispatched") is not None)


async def entries_queued(
    dispatcher: Dispatcher, kind: str, count: int, within_s: float = 30.0, claimed: int = 0
) -> None:
    """Until the dispatcher's queue index mirrors ``count`` entries of ``kind``, ``claimed`` of them held
    by a running attempt (its KV watch)."""
    queue = dispatcher.books.queue
    assert queue is not None

    def held() -> int:
        return sum(1 for entry, _ in queue.entries(kind) if entry.claimed_by is not None)

    async with asyncio.timeout(within_s):
        while len(queue.entries(kind)) < count or held() < claimed:
            queue.changed.clear()
            await queue.changed.wait()


async def quota_book(js: JetStreamContext, ns: Namespace) -> QuotaBook:
    """The quotas and daily usage of the test's namespace, as the dispatcher reads them (no cache)."""
    quotas = await js.key_value(ns.bucket(KV_QUOTAS))
    return QuotaBook(quotas, await js.key_value(ns.bucket(KV_TENANT_USAGE)), TenantQuota(), ttl_s=0.0)
