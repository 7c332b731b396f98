"""Scheduling with 100 tenants queued: decision latency and jobs/s, fair share against FIFO in one run.

For each policy (``fair``: the scheduler's weighted fair share; ``fifo``: the oldest queued attempt
of the kind first, today's order before fair share, through the same machinery), a fresh namespace
gets one dispatcher whose ``pose`` route (concurrency 8) runs on a backend that ends each run at
once, held shut until ``TENANTS × JOBS_PER_TENANT`` jobs are queued; then it is opened and the
time until every job succeeded gives jobs/s, and the scheduler's own timings of each decision
(ticket in → attempt claimed) give the decision latency.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from nats.js import JetStreamContext

from bench.common import Result, format_table
from contracts import streams
from contracts.envelope import utc_now
from contracts.event_ids import worker_event_id
from contracts.events.jobs import JobSucceededPayload
from contracts.events.registry import EventType, job_created_event, make_event
from contracts.ids import new_id, tenant_key
from contracts.job_record import JobRecord
from contracts.route_table import RetryPolicy, Route, Stage
from contracts.runs import Outcome, RunRequest
from contracts.specs.jobs import parse_job_spec
from contracts.subjects import Namespace, Subjects
from services.common.nats.publish import publish_event
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.running.backends import Announce, Launch
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatcherSettings

TENANTS = 100
JOBS_PER_TENANT = 5
CONCURRENCY = 8
TIMEOUT_S = 180.0
BODY = {"kind": "pose", "inputs": {"video": {"url": "https://example.com/v.mp4"}}}


class GatedBackend:
    """Ends every run at once (publishing the worker's ``job.succeeded``) once ``gate`` is set."""

    name = "local"

    def __init__(self, js: JetStreamContext, subjects: Subjects) -> None:
        self.js, self.subjects, self.gate = js, subjects, asyncio.Event()

    async def reserve(self) -> None:
        """Wait for the gate."""
        await self.gate.wait()

    def release(self, reservation: Any) -> None:
        """Nothing to give back."""

    async def launch(
        self, reservation: Any, request: RunRequest, route: Route, stage: Stage, announce: Announce
    ) -> Launch:
        """Announce, publish ``job.succeeded``, done."""
        await announce(f"bench:{request.job_id}", None)
        event = make_event(
            EventType.JOB_SUCCEEDED, JobSucceededPayload(result={}), tenant=request.tenant, source="worker",
            job_id=request.job_id, kind=request.kind, attempt=request.attempt,
            event_id=worker_event_id(request.job_id, request.attempt, "succeeded"),
        )  # fmt: skip
        await publish_event(self.js, self.subjects.job_event(request.tenant, request.job_id, "succeeded"), event)
        return Launch(f"bench:{request.job_id}", asyncio.create_task(_succeeded()), self._cancel)

    async def _cancel(self) -> None:
        return None

    async def cancel_call(self, call_id: str, job_id: str = "", attempt: int = 0) -> None:
        """Nothing to cancel."""


async def _succeeded() -> Outcome:
    return Outcome(status="succeeded")


async def _submit(js: JetStreamContext, kv: Any, subjects: Subjects, tenant: str) -> str:
    job_id = new_id("job")
    record = JobRecord.new(job_id, tenant, parse_job_spec(BODY), utc_now())
    await kv.create(tenant_key(tenant, job_id), record.model_dump_json().encode())
    await publish_event(js, subjects.job_event(tenant, job_id, "created"), job_created_event(record))
    return job_id


async def one_policy(url: str, data_dir: Path, policy: str) -> tuple[float, list[float]]:
    """jobs/s and the decision latencies (ms) of ``policy`` in a namespace of its own."""
    ns = Namespace(f"bench{policy}")
    settings = DispatcherSettings(
        profile="test", nats_url=url, namespace=ns.name, data_dir=data_dir, log_level="WARNING",
        scheduling_policy=policy, ticket_ack_wait_s=30.0,
    )  # fmt: skip
    nc = await nats.connect(url)
    js, subjects = nc.jetstream(), Subjects(ns)
    backend = GatedBackend(js, subjects)
    route = Route(
        backend="local", function="pose", local="bench.noop_workload:noop", concurrency=CONCURRENCY,
        retries=RetryPolicy(max_attempts=1),
    )  # fmt: skip
    dispatcher = Dispatcher(settings, routes={"pose": route}, backends={"local": backend})
    await dispatcher.start()
    total, succeeded = TENANTS * JOBS_PER_TENANT, asyncio.Event()
    seen: set[str] = set()

    async def on_done(msg: Any) -> None:
        seen.add(msg.subject)
        if len(seen) >= total:
            succeeded.set()

    try:
        await nc.subscribe(ns.subject("jobs.*.*.succeeded"), cb=on_done)
        kv = await js.key_value(ns.bucket(streams.KV_JOBS))
        for _ in range(JOBS_PER_TENANT):
            await asyncio.gather(*(_submit(js, kv, subjects, f"t{t:03d}") for t in range(TENANTS)))
        queue = dispatcher.books.queue
        assert queue is not None
        async with asyncio.timeout(TIMEOUT_S):
            while len(queue.entries("pose")) < total:
                queue.changed.clear()
                await queue.changed.wait()
        assert dispatcher.attempts is not None
        dispatcher.attempts.scheduler.decision_ms.clear()
        begin = time.perf_counter()
        backend.gate.set()
        await asyncio.wait_for(succeeded.wait(), TIMEOUT_S)
        elapsed = time.perf_counter() - begin
        return total / elapsed, list(dispatcher.attempts.scheduler.decision_ms)
    finally:
        backend.gate.set()
        await dispatcher.stop()
        await nc.close()


async def measure_scheduling(url: str, data_dir: Path) -> list[Result]:
    """Fair share against FIFO, 100 tenants queued, on the server at ``url``."""
    fifo_rate, fifo_ms = await one_policy(url, data_dir / "fifo", "fifo")
    fair_rate, fair_ms = await one_policy(url, data_dir / "fair", "fair")
    queued = f"{TENANTS} tenants × {JOBS_PER_TENANT} queued, concurrency {CONCURRENCY}"
    p99 = [sorted(ms)[int(0.99 * (len(ms) - 1))] for ms in (fair_ms, fifo_ms)]
    return [
        Result.compare(f"scheduling decision p50, fair share ({queued}; baseline: FIFO)",
                       statistics.median(fair_ms), "ms", statistics.median(fifo_ms)),
        Result.compare(f"scheduling decision p99, fair share ({queued}; baseline: FIFO)", p99[0], "ms", p99[1]),
        Result.compare(f"scheduled jobs/s, fair share ({queued}; baseline: FIFO)", fair_rate, "jobs/s", fifo_rate),
    ]  # fmt: skip


async def _alone() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
        return await measure_scheduling(server.url, Path(tmp))


if __name__ == "__main__":  # this part alone (bench/dispatch.py runs it with the rest)
    print(format_table(asyncio.run(_alone())))
