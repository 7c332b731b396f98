"""Event sinks against the real services: the gateway's ingest route (Modal) and NATS (local pool)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from bench.harness.secrets import INGEST_SECRET
from contracts.event_ids import attempt_event_id, worker_event_id
from contracts.events.jobs import JobDispatchedPayload, JobLogPayload
from contracts.events.registry import EventType, make_event
from contracts.ids import new_id
from contracts.streams import Declarations
from contracts.subjects import Namespace, Subjects
from modal_workers.runtime.sinks import IngestSink
from modal_workers.runtime.worker_runtime import WorkerContext, WorkerRuntime
from services.common.auth.ingest_tokens import mint_ingest_token
from services.common.nats.embedded import EmbeddedNats
from services.common.nats.publish import publish_event
from tests.support.dispatcher import request_cancel
from tests.support.gateway import Gateway, stored
from tests.support.lap import TENANT, closing, lap_request, local_storage, nats_runtime

pytestmark = pytest.mark.timeout(60)


class Flaky(httpx.AsyncBaseTransport):
    """Answers the first ``failures`` requests with 503, then forwards to the real gateway."""

    def __init__(self, failures: int) -> None:
        self.failures, self.requests = failures, 0
        self._real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.requests <= self.failures:
            return httpx.Response(503, headers={"Retry-After": "0"})
        return await self._real.handle_async_request(request)


def _sink(gateway: Gateway, job_id: str, **options: Any) -> IngestSink:
    token = mint_ingest_token(INGEST_SECRET.encode(), TENANT, job_id, 1, ttl_s=600)
    return IngestSink(f"{gateway.url}/v1/internal/jobs/{job_id}/events", token, backoff_s=0.01, **options)


async def test_the_ingest_sink_retries_and_a_resent_event_is_stored_once(
    gateway: Gateway, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    job_id = new_id("job")
    flaky = Flaky(failures=2)
    sink = _sink(gateway, job_id, transport=flaky)
    event = make_event(
        EventType.JOB_LOG, JobLogPayload(message="hello"), tenant=TENANT, source="worker/lap_compare",
        job_id=job_id, kind="lap_compare", attempt=1, event_id=worker_event_id(job_id, 1),
    )  # fmt: skip
    try:
        await sink.send("log", event)  # two 503s, then stored
        await sink.send("log", event)  # a resend (e.g. the ack was lost): deduplicated
    finally:
        await sink.close()
    assert flaky.requests == 4
    events = await stored(js, namespace, subjects.job_events(TENANT, job_id))
    assert [e.id for e in events] == [event.id]


async def test_a_refused_event_is_not_retried(gateway: Gateway) -> None:
    counted = Flaky(failures=0)  # counts the requests, forwards each
    sink = _sink(gateway, new_id("job"), transport=counted)
    other_job = new_id("job")
    other = make_event(
        EventType.JOB_LOG, JobLogPayload(message="x"), tenant=TENANT, source="worker/x", job_id=other_job,
        attempt=1, event_id=worker_event_id(other_job, 1),
    )  # fmt: skip
    try:
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await sink.send("log", other)  # another job's event: 403, at once
    finally:
        await sink.close()
    assert refused.value.response.status_code == 403
    assert counted.requests == 1  # a retry would have sent it again


def quick(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Progress, an artifact, a result."""
    ctx.progress(0.5, "half")
    ctx.artifact("out.txt", b"hello")
    return {"ok": True}


async def test_a_run_through_the_ingest_route_lands_in_the_job_stream_in_order(
    gateway: Gateway, js: JetStreamContext, namespace: Namespace, subjects: Subjects, tmp_path: Path
) -> None:
    request = lap_request({"video": "upl_x"})
    token = mint_ingest_token(INGEST_SECRET.encode(), TENANT, request.job_id, 1, ttl_s=600)
    url = f"{gateway.url}/v1/internal/jobs/{request.job_id}/events"
    runtime = WorkerRuntime(lambda: IngestSink.create(url, token), lambda: local_storage(tmp_path))
    with closing(runtime):
        outcome = await asyncio.to_thread(runtime.run, quick, request)
    assert outcome.status == "succeeded"
    events = await stored(js, namespace, subjects.job_events(TENANT, request.job_id))
    assert [e.type for e in events] == ["job.started", "job.progress", "job.artifact", "job.succeeded"]


@pytest.fixture
def local_runtime(
    nats_server: EmbeddedNats, namespace: Namespace, declared: Declarations, tmp_path: Path
) -> Iterator[WorkerRuntime]:
    """A runtime publishing straight to JetStream, as the local pool's (closed after the test)."""
    runtime = nats_runtime(nats_server.url, namespace.name, tmp_path, cancel_grace_s=0.05)
    with closing(runtime):
        yield runtime


async def test_the_cancel_watch_sets_the_flag_when_cancel_is_requested(
    local_runtime: WorkerRuntime, js: JetStreamContext, subjects: Subjects
) -> None:
    seen = asyncio.Event()
    loop = asyncio.get_running_loop()

    def waits(spec: Any, ctx: WorkerContext) -> None:
        loop.call_soon_threadsafe(seen.set)
        for _ in range(2000):
            ctx.check_cancelled()
            time.sleep(0.005)

    request = lap_request({"video": "upl_x"})
    running = asyncio.create_task(asyncio.to_thread(local_runtime.run, waits, request))
    await asyncio.wait_for(seen.wait(), 10)
    await request_cancel(js, subjects, request.job_id, TENANT)
    outcome = await asyncio.wait_for(running, 5)
    assert outcome.status == "retryable"
    assert outcome.error is not None
    assert outcome.error.code == "canceled"


async def _dispatched(js: JetStreamContext, subjects: Subjects, job_id: str, attempt: int) -> int:
    """Publish ``attempt``'s ``job.dispatched`` as the dispatcher does; its JOBS sequence."""
    event = make_event(
        EventType.JOB_DISPATCHED, JobDispatchedPayload(backend="local", function="quick"), tenant=TENANT,
        source="dispatcher", job_id=job_id, kind="lap_compare", attempt=attempt,
        event_id=attempt_event_id(job_id, attempt, "dispatched"),
    )  # fmt: skip
    return (await publish_event(js, subjects.job_event(TENANT, job_id, "dispatched"), event)).seq


async def test_an_attempt_dispatched_again_meanwhile_cannot_end_the_job(
    local_runtime: WorkerRuntime, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    """A local run's job.succeeded is fenced by its attempt's job.dispatched: attempt 1, whose host was
    cut off while attempt 2 was dispatched, runs to the end but its ending is not stored (it was, as a
    second job.succeeded, before the fence); attempt 2's is. The rest of attempt 1's events are stored:
    the fold ignores another attempt's progress."""
    first = lap_request({"video": "upl_x"})
    job_id = first.job_id
    first = first.model_copy(update={"dispatched_seq": await _dispatched(js, subjects, job_id, 1)})
    second = first.model_copy(update={"attempt": 2, "dispatched_seq": await _dispatched(js, subjects, job_id, 2)})
    assert (await asyncio.to_thread(local_runtime.run, quick, first)).status == "succeeded"
    assert (await asyncio.to_thread(local_runtime.run, quick, second)).status == "succeeded"
    events = await stored(js, namespace, subjects.job_events(TENANT, job_id))
    endings = [(e.type, e.attempt) for e in events if e.type == "job.succeeded"]
    assert endings == [("job.succeeded", 2)]
    assert [(e.type, e.attempt) for e in events if e.type == "job.started"] == [("job.started", 1), ("job.started", 2)]
