"""Credentials kept out of exported spans: FastAPI's request spans record ``url.query``, where a browser's
scoped token travels as ``?token=`` (SSE, sockets); this processor masks it (as the logs do) before any
exporter sees the span."""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor

from services.common.observability.logging import scrub

URL_ATTRIBUTES = ("url.query", "url.full", "http.target", "http.url")


class QueryMask(SpanProcessor):
    """Masks ``token=`` (and every value the logs mask) in a span's URL attributes when it starts."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for name in URL_ATTRIBUTES:
            value = (span.attributes or {}).get(name)
            if not isinstance(value, str):
                continue
            masked = scrub("?" + value)[1:] if name == "url.query" else scrub(value)
            if masked != value:
                span.set_attribute(name, masked)
