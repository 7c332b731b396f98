"""Metrics and traces of the whole embedded stack, end to end (real NATS, real HTTP on loopback).

A job runs through :class:`~services.cli.dev.DevStack` (the gateway, the dispatcher with its local
pool, the notifier, one process, one registry) with an SSE reader and a signed webhook receiver:

* its ``/metrics`` (on the gateway's origin) parses and its counters move: the job counted by kind,
  its queue wait and run time observed, its GPU-seconds and cost added, the HTTP histogram labelled
  by route template, the SSE gauge up while the stream is open and down after, the webhook's
  deliveries counted by endpoint; no label holds the job's id.
* it is one trace: the gateway's request span, the dispatcher's consumer and attempt spans and the
  notifier's delivery and SSE spans reach an in-memory exporter (same process); the pool worker is
  another process, whose spans reach an OTLP/HTTP receiver the test runs on loopback. The worker's
  run span is a child of the dispatcher's attempt span, and the dispatcher folds the worker's
  ``job.started`` in a span whose parent is that run span: the context went there and came back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.cli.dev import DevStack
from tests.e2e.support import Receiver, auth, events_client, lap_job, receiver, settled
from tests.support.metrics import moved, scrape, scrape_until
from tests.support.otlp import otlp_receiver

pytestmark = pytest.mark.timeout(90)

KIND = "lap_compare"
ROUTES = f"""
profiles:
  dev:
    {KIND}:
      backend: local
      local: tests.dispatcher.workloads:quick
      function: {KIND}
      timeout_s: 60
      retries: {{max_attempts: 1}}
      concurrency: 2
      price_per_gpu_hour: 3.6
  prod: {{}}
"""
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(1000)
"""Bytes an upload of type video/mp4 passes the magic check with (the quick workload never reads them)."""


@asynccontextmanager
async def quick_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    """The embedded stack with the kind routed to the quick workload, and an API client."""
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    monkeypatch.setenv("GPURELAY_ROUTE_TABLE", str(routes))
    stack = DevStack(data_dir=tmp_path / "data", port=0)
    try:
        env = await stack.start()
        async with httpx.AsyncClient(base_url=env["GPURELAY_URL"], headers=auth(env), timeout=30) as api:
            yield env, api
    finally:
        await stack.stop()


async def webhook(api: httpx.AsyncClient, hook: Receiver) -> str:
    """Register ``hook`` for every job event; the endpoint's id."""
    registered = await api.post("/v1/webhooks", json={"url": hook.url, "events": ["job.*"]})
    assert registered.status_code == 201, registered.text
    hook.secret = registered.json()["secret"]
    endpoint_id: str = registered.json()["id"]
    return endpoint_id


async def quick_job(api: httpx.AsyncClient, tmp_path: Path) -> str:
    """Upload the stand-in video and create a job of :data:`KIND` on it; the job id."""
    video = tmp_path / "clip.mp4"
    video.write_bytes(MP4)
    return await lap_job(api, video)


async def test_metrics_move_as_a_job_runs_through_the_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with receiver(asyncio.get_running_loop()) as hook:
        async with quick_stack(tmp_path, monkeypatch) as (env, api):
            endpoint = f"dev/{await webhook(api, hook)}"
            before = await scrape(api)
            async with api.stream("GET", "/v1/events", headers={"Accept": "text/event-stream"}) as tenant_stream:
                assert tenant_stream.status_code == 200  # the tenant's stream stays open until we leave
                during = await scrape(api)
            job_id = await quick_job(api, tmp_path)
            async with asyncio.timeout(30), events_client(env) as client:
                types = [event.type async for event in client.jobs.stream(job_id)]
            delivered = await hook.until(job_id, "job.succeeded")
            await settled(env, job_id)
            after = await scrape_until(
                api,
                lambda s: (
                    s.value("gpurelay_sse_connections") == before.value("gpurelay_sse_connections")
                    and moved(before, s, "gpurelay_webhook_deliveries_total", endpoint=endpoint) >= len(delivered)
                    # the attempt ends when the dispatcher's own KV watch sees the record this test saw
                    and moved(before, s, "gpurelay_job_run_seconds_count", kind=KIND, outcome="succeeded") >= 1
                ),
                timeout_s=30.0,  # a loaded machine: the attempt's end trails the record by seconds
            )

    assert types[-1] == "job.succeeded", types
    assert during.value("gpurelay_sse_connections") == before.value("gpurelay_sse_connections") + 1
    assert moved(before, after, "gpurelay_jobs_created_total", kind=KIND) == 1
    assert moved(before, after, "gpurelay_jobs_finished_total", kind=KIND, status="succeeded") == 1
    assert moved(before, after, "gpurelay_job_queue_wait_seconds_count", kind=KIND) == 1
    assert moved(before, after, "gpurelay_job_run_seconds_count", kind=KIND, outcome="succeeded") == 1
    assert moved(before, after, "gpurelay_job_gpu_seconds_total", kind=KIND) > 0
    assert moved(before, after, "gpurelay_job_cost_usd_total", kind=KIND) > 0
    http = "gpurelay_http_request_duration_seconds_count"
    assert moved(before, after, http, method="POST", route="/v1/jobs", status="201") == 1
    assert moved(before, after, http, method="GET", route="/v1/jobs/{job_id}/events", status="200") == 1
    assert moved(before, after, http, method="POST", route="/v1/uploads/{upload_id}/complete", status="200") == 1
    assert moved(before, after, "gpurelay_events_published_total", type="job.created") == 1
    assert moved(before, after, "gpurelay_events_consumed_total", consumer="dispatcher-fold", type="job.succeeded") == 1
    assert moved(before, after, "gpurelay_events_consumed_total", consumer="sse", type="job.succeeded") == 1
    assert moved(before, after, "gpurelay_webhook_attempts_total", endpoint=endpoint, result="2xx") >= len(delivered)
    assert after.value("gpurelay_local_pool_processes", state="size") == 2
    consumers = {labels["consumer"] for labels in after.labels("gpurelay_consumer_pending_messages")}
    assert {"dispatcher-fold-0", "dispatcher-uploads", f"dispatch-{KIND}", "notifier_fanout"} <= consumers
    assert not [value for value in after.label_values() if job_id in value], "a label holds the job id"


def spans_named(spans: tuple[ReadableSpan, ...], trace_id: str, name: str) -> list[ReadableSpan]:
    """The spans of trace ``trace_id`` called ``name``."""
    return [s for s in spans if s.name == name and s.context is not None and f"{s.context.trace_id:032x}" == trace_id]


async def spans_when(
    exporter: InMemorySpanExporter, trace_id: str, names: tuple[str, ...], timeout_s: float = 30.0
) -> tuple[ReadableSpan, ...]:
    """Every finished span once each of ``names`` has ended in trace ``trace_id`` (at most ``timeout_s``).

    A span ends after the event the test saw: the attempt's when the dispatcher's own KV watch sees
    the terminal record, the webhook delivery's when the receiver's answer is back."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        spans = tuple(exporter.get_finished_spans())
        if all(spans_named(spans, trace_id, name) for name in names) or asyncio.get_running_loop().time() > deadline:
            return spans  # past the deadline the test's own assertions say which span is missing
        await asyncio.sleep(0.05)  # spans end in this process's own loop; nothing to subscribe to


def span_id(span: ReadableSpan) -> str:
    """A span's id as in ``traceparent``."""
    assert span.context is not None
    return f"{span.context.span_id:016x}"


async def test_one_job_is_one_trace_across_gateway_dispatcher_worker_and_notifier(
    span_exporter: InMemorySpanExporter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    with otlp_receiver(loop) as otlp, receiver(loop) as hook:
        monkeypatch.setenv("GPURELAY_OTLP_ENDPOINT", otlp.url)  # read by the pool workers' settings
        async with quick_stack(tmp_path, monkeypatch) as (env, api):
            await webhook(api, hook)
            job_id = await quick_job(api, tmp_path)
            async with asyncio.timeout(30), events_client(env) as client:
                assert [event.type async for event in client.jobs.stream(job_id)][-1] == "job.succeeded"
            await hook.until(job_id, "job.succeeded")
            await settled(env, job_id)
            created = [s for s in span_exporter.get_finished_spans() if s.name == "POST /v1/jobs"]
            assert len(created) == 1
            assert created[0].context is not None
            trace_id = f"{created[0].context.trace_id:032x}"
            run = await otlp.until(lambda s: s.name == f"run {KIND}" and s.trace_id == trace_id)
            ended = (f"attempt {KIND}", "dispatcher-fold job.started", "webhook deliver", "sse job.succeeded")
            spans = await spans_when(span_exporter, trace_id, ended)

    assert run.service == "gpurelay-worker"
    attempt = spans_named(spans, trace_id, f"attempt {KIND}")
    assert len(attempt) == 1
    assert run.parent_id == span_id(attempt[0]), "the worker's run is not a child of the dispatcher's attempt"
    for name in ("dispatcher-fold job.created", "dispatcher-fold job.queued", f"dispatch-{KIND} ticket"):
        assert spans_named(spans, trace_id, name), f"no {name!r} span in the job's trace"
    started = spans_named(spans, trace_id, "dispatcher-fold job.started")
    assert started
    assert started[0].parent is not None
    assert f"{started[0].parent.span_id:016x}" == run.span_id, "the worker's event did not carry its span"
    assert spans_named(spans, trace_id, "webhook deliver"), "no webhook delivery span in the job's trace"
    assert spans_named(spans, trace_id, "sse job.succeeded"), "no SSE span in the job's trace"
