"""OpenTelemetry tracing: one trace per job, its W3C ``traceparent`` carried in NATS and HTTP headers.

Off by default. Unless an OTLP endpoint is configured (``GPURELAY_OTLP_ENDPOINT``, or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) no tracer provider is
installed: spans are the API's no-op ones, which still hand on a parent context they were given (a
trace passes through an untraced process unbroken), FastAPI's own request spans stay off, and
nothing is recorded or exported.

:func:`setup_tracing` (called by the entry points only: each service, ``gpurelay dev``, a pool
worker, a Modal call) installs an SDK provider that exports OTLP/HTTP in batches, sampled by
``GPURELAY_TRACE_SAMPLE_RATIO`` (a child follows its parent's decision); :func:`install` puts a
given provider in place (tests: an in-memory exporter). :func:`inject` writes the current context
into a carrier (a NATS message's headers, an HTTP request's, a ``RunRequest.trace``) and
:func:`extract` reads one back. :mod:`services.common.nats.publish` injects into every envelope it
publishes; a consumer starts its span from the message's headers (:func:`consumer_span`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig

    from services.common.config import BaseServiceSettings

TRACE_HEADERS = ("traceparent", "tracestate")
"""The W3C trace context headers (what a copy of a message keeps to stay in its trace)."""
UNTRACED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
"""Routes FastAPI does not trace (scrapes and probes)."""
TRACER_NAME = "gpurelay"

_C = TypeVar("_C", bound=MutableMapping[str, str])
_provider: trace.TracerProvider | None = None
_owned = False


def otlp_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a base ``endpoint`` (``…/v1/traces`` appended unless present)."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def configured_endpoint(settings: BaseServiceSettings) -> str | None:
    """Where traces go: ``GPURELAY_OTLP_ENDPOINT``, else the standard OTEL variables; ``None``: nowhere."""
    if settings.otlp_endpoint:
        return otlp_traces_url(settings.otlp_endpoint)
    if traces := os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return otlp_traces_url(base) if base else None


def setup_tracing(settings: BaseServiceSettings, service: str) -> bool:
    """Export this process's spans (service ``gpurelay-{service}``) when an endpoint is configured."""
    endpoint = configured_endpoint(settings)
    if endpoint is None:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"gpurelay-{service}"}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    install(provider, owned=True)
    return True


def install(provider: trace.TracerProvider | None, *, owned: bool = False) -> None:
    """Trace with ``provider`` from now on (``None``: off); a provider :func:`setup_tracing` made is shut down."""
    global _provider, _owned
    if (
        provider is not None
        and hasattr(provider, "add_span_processor")
        and not getattr(provider, "_gpurelay_masked", False)
    ):
        from services.common.observability.span_masks import QueryMask

        provider.add_span_processor(QueryMask())  # ?token= never leaves in a span
        provider._gpurelay_masked = True  # type: ignore[attr-defined]
    previous, was_owned = _provider, _owned
    _provider, _owned = provider, owned
    if was_owned and previous is not None and previous is not provider:
        getattr(previous, "shutdown", lambda: None)()


def enabled() -> bool:
    """Whether spans are recorded in this process."""
    return _provider is not None


_NO_OP_TRACER = trace.NoOpTracer()


def tracer() -> trace.Tracer:
    """The tracer of this process (the no-op one while tracing is off)."""
    return _provider.get_tracer(TRACER_NAME) if _provider is not None else _NO_OP_TRACER


def flush(timeout_s: float = 5.0) -> None:
    """Export the spans ended so far (a worker after each run, before its container may freeze)."""
    force_flush = getattr(_provider, "force_flush", None)
    if force_flush is not None:
        force_flush(int(timeout_s * 1000))


def inject(carrier: _C) -> _C:
    """Write the current trace context into ``carrier`` (nothing while no span is current); ``carrier``."""
    propagate.inject(carrier)
    return carrier


def extract(headers: Mapping[str, str] | None) -> Context:
    """The trace context in ``headers`` (a fresh, empty context when they carry none)."""
    if not headers or "traceparent" not in headers:
        return Context()
    return propagate.extract({k: v for k, v in headers.items() if k in TRACE_HEADERS})


def trace_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Only the trace context headers of ``headers`` (what a copy passes on)."""
    return {k: v for k, v in (headers or {}).items() if k in TRACE_HEADERS}


def current_links() -> list[Link]:
    """A link to the current span, when one is recording (a span started in another trace points back)."""
    context = trace.get_current_span().get_span_context()
    return [Link(context)] if context.is_valid else []


def annotate(**attributes: Any) -> None:
    """Set ``attributes`` on the current span (nothing while none records)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(attributes)


def start_span(name: str, headers: Mapping[str, str] | None, *, kind: SpanKind, **attributes: Any) -> Span:
    """A span in the trace of a message with ``headers``, not made current (end it yourself), linked to
    the current span: for work that spans a ``yield`` (an SSE frame sent)."""
    return tracer().start_span(name, extract(headers), kind=kind, attributes=attributes, links=current_links())


@contextmanager
def span(
    name: str,
    parent: Context | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: list[Link] | None = None,
) -> Iterator[Span]:
    """A current span ``name`` under ``parent`` (default: the current context)."""
    with tracer().start_as_current_span(
        name, context=parent, kind=kind, attributes=dict(attributes or {}), links=links
    ) as current:
        yield current


@contextmanager
def consumer_span(name: str, headers: Mapping[str, str] | None, **attributes: Any) -> Iterator[Span]:
    """A current consumer span ``name`` in the trace of a message with ``headers``. While tracing is off
    and the message carries no trace context, nothing: there is no span, and no context to pass on."""
    if _provider is None and (not headers or "traceparent" not in headers):
        token = otel_context.attach(Context())  # as the no-op span would: no context inside
        try:
            yield trace.INVALID_SPAN
        finally:
            otel_context.detach(token)
        return
    attributes.setdefault("messaging.system", "nats")
    with span(name, extract(headers), kind=SpanKind.CONSUMER, attributes=attributes) as current:
        yield current


def fastapi_telemetry() -> TelemetryConfig:
    """``FastAPI(telemetry=...)``: request spans with this process's provider while tracing is on, never
    FastAPI's own metrics or logs (Prometheus and our logging do that), scrapes and probes not traced."""
    return {
        "tracing": enabled(),
        "tracer_provider": _provider,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "auto_configure": False,
        "exclude": lambda scope: scope.get("path") in UNTRACED_PATHS,
    }
