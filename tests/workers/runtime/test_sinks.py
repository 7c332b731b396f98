"""Event sinks against the real services: the gateway's ingest route (Modal) and NATS (local pool)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from bench.harness.secrets import INGEST_SECRET
from contracts.event_ids import worker_event_id
from contracts.events.jobs import JobLogPayload
from contracts.events.registry import EventType, make_event
from contracts.ids import new_id
from contracts.subjects import Namespace, Subjects
from modal_workers.runtime.sinks import IngestSink
from modal_workers.runtime.worker_runtime import WorkerContext, WorkerRuntime
from services.common.auth.ingest_tokens import mint_ingest_token
from tests.support.dispatcher import request_cancel
from tests.support.gateway import Gateway, stored
from tests.support.lap import TENANT, closing, lap_request, local_storage

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
