"""A Modal worker's trace through the ingest route: :class:`~modal_workers.runtime.sinks.IngestSink`
sends the run's ``traceparent``; the gateway's request span is its child and the event it stores
carries the gateway's span, so the job's trace goes on through NATS."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from modal_workers.runtime.sinks import IngestSink
from services.common.observability import tracing
from tests.gateway.ingest.test_ingest import JOB, event, token
from tests.support.gateway import Gateway


@pytest.fixture
def gateway_overrides(span_exporter: InMemorySpanExporter) -> dict[str, object]:
    """Tracing is on before the gateway's app is made."""
    return {}


async def test_the_workers_trace_goes_through_the_ingest_route_into_the_stored_event(
    span_exporter: InMemorySpanExporter,
    gateway: Gateway,
    js: JetStreamContext,
    namespace: Namespace,
    subjects: Subjects,
) -> None:
    sink = IngestSink(f"{gateway.url}/v1/internal/jobs/{JOB}/events", token())
    try:
        with tracing.span("run pose") as run:
            await sink.send("progress", event())
    finally:
        await sink.close()
    msg = await js.get_last_msg(namespace.stream(JOBS), subjects.stored_job_event("acme", JOB, "progress"))
    _, trace_id, parent_id, _ = (msg.headers or {})["traceparent"].split("-")

    worker = run.get_span_context()
    server = [s for s in span_exporter.get_finished_spans() if s.name == "POST /v1/internal/jobs/{job_id}/events"]
    assert len(server) == 1
    assert server[0].parent is not None
    assert server[0].parent.span_id == worker.span_id, "the gateway's span is not the worker's child"
    assert server[0].context is not None
    assert trace_id == f"{worker.trace_id:032x}"
    assert parent_id == f"{server[0].context.span_id:016x}", "the stored event does not carry the gateway's span"
