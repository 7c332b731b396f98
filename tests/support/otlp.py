"""An OTLP/HTTP trace receiver on loopback: what a process (a pool worker) exports reaches the test.

It decodes each ``POST /v1/traces`` (protobuf, as ``opentelemetry-exporter-otlp-proto-http`` sends
it) into :class:`ReceivedSpan`\\ s and hands them to the test's event loop; :meth:`OtlpReceiver.until`
waits (bounded) for a span the test names.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.http import bound_socket, serve


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span: ids as lowercase hex (as in ``traceparent``), its name and service."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str


@dataclass
class OtlpReceiver:
    """Collects exported spans (see the module docstring)."""

    loop: asyncio.AbstractEventLoop
    url: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    _arrived: asyncio.Queue[ReceivedSpan] = field(default_factory=asyncio.Queue)

    async def handle(self, request: Request) -> Response:
        """Decode one export request and answer success."""
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received = ReceivedSpan(
                        span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name,
                        attributes.get("service.name", ""),
                    )  # fmt: skip
                    self.loop.call_soon_threadsafe(self._arrived.put_nowait, received)
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    async def until(self, found: Callable[[ReceivedSpan], bool], timeout_s: float = 20.0) -> ReceivedSpan:
        """The first received span for which ``found`` holds (waits, bounded)."""
        async with asyncio.timeout(timeout_s):
            while True:
                match = next((s for s in self.spans if found(s)), None)
                if match is not None:
                    return match
                self.spans.append(await self._arrived.get())


@contextmanager
def otlp_receiver(loop: asyncio.AbstractEventLoop) -> Iterator[OtlpReceiver]:
    """An :class:`OtlpReceiver` on 127.0.0.1 for the block; its ``url`` is the OTLP base URL."""
    receiver = OtlpReceiver(loop)
    sock = bound_socket()
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with serve(Starlette(routes=[Route("/v1/traces", receiver.handle, methods=["POST"])]), sock):
        yield receiver
