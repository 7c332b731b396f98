"""Tracing: off by default (no header added, FastAPI's spans off, nothing set up without an endpoint);
on, every envelope published carries the publisher's W3C context and a consumer span continues it."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from contracts.streams import JOBS, Declarations
from contracts.subjects import Namespace, Subjects
from services.common.config import BaseServiceSettings
from services.common.nats.publish import publish_event
from services.common.observability import tracing
from tests.gateway.ingest.test_ingest import event


async def stored_headers(js: JetStreamContext, namespace: Namespace, subjects: Subjects) -> dict[str, str]:
    """Publish a progress event the one way envelopes are published; the headers JOBS stored."""
    subject = subjects.job_event("acme", "job_0001", "progress")
    await publish_event(js, subject, event())
    msg = await js.get_last_msg(namespace.stream(JOBS), subjects.stored_job_event("acme", "job_0001", "progress"))
    return dict(msg.headers or {})


async def test_off_by_default_nothing_is_added(
    js: JetStreamContext, namespace: Namespace, subjects: Subjects, declared: Declarations
) -> None:
    assert not tracing.enabled()
    with tracing.span("nothing records"):
        headers = await stored_headers(js, namespace, subjects)
    assert "traceparent" not in headers
    assert tracing.fastapi_telemetry()["tracing"] is False


async def test_a_published_envelope_carries_the_publishers_span_and_its_consumer_continues_it(
    span_exporter: InMemorySpanExporter,
    js: JetStreamContext,
    namespace: Namespace,
    subjects: Subjects,
    declared: Declarations,
) -> None:
    with tracing.span("publisher") as publisher:
        headers = await stored_headers(js, namespace, subjects)
    with tracing.consumer_span("consumer", headers):
        pass
    context = publisher.get_span_context()
    _, trace_id, parent_id, _ = headers["traceparent"].split("-")
    assert (trace_id, parent_id) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    consumer = next(s for s in span_exporter.get_finished_spans() if s.name == "consumer")
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.parent is not None
    assert (consumer.parent.trace_id, consumer.parent.span_id) == (context.trace_id, context.span_id)


def test_no_endpoint_no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GPURELAY_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.setup_tracing(BaseServiceSettings(_env_file=None), "gateway") is False
    assert not tracing.enabled()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GPURELAY_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"),
        ({"GPURELAY_OTLP_ENDPOINT": "http://collector:4318/v1/traces/"}, "http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318/"}, "http://otel:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://otel:4318/x/traces"}, "http://otel:4318/x/traces"),
    ],
)
def test_the_endpoint_comes_from_our_setting_or_the_standard_variables(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GPURELAY_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing.configured_endpoint(BaseServiceSettings(_env_file=None)) == expected


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("outer", [None, TRACEPARENT])
def test_off_a_consumer_span_passes_on_the_messages_context_and_only_that(outer: str | None) -> None:
    assert not tracing.enabled()
    around = tracing.extract({"traceparent": outer} if outer else None)
    token = otel_context.attach(around)  # whatever context the consumer runs in
    try:
        with tracing.consumer_span("bare", {"webhook-id": "e1"}) as bare:
            inside_bare = tracing.inject({})
        with tracing.consumer_span("carried", {"traceparent": TRACEPARENT}) as carried:
            inside_carried = tracing.inject({})
        after = tracing.inject({})
    finally:
        otel_context.detach(token)
    assert not bare.is_recording()
    assert inside_bare == {}, "a message without a trace context is no part of the surrounding one"
    assert not carried.is_recording()
    assert inside_carried["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1], "passed on through"
    assert ("traceparent" in after) == (outer is not None), "the surrounding context is back"
