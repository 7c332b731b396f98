"""``jobs.stream`` against stand-in SSE endpoints that misbehave on purpose (what the CLI's ``submit`` and
``session`` watch through): a dropped connection and a stream that ends early are resumed with
``Last-Event-ID`` after the server's ``retry:`` hint, an answer of "not now" (503) is waited out, an
error answer (401) raises the typed problem at once, and a stream gone silent (no event, no keep-alive)
is taken as cut after ``stream_idle_timeout`` and resumed."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator

import pytest
from gpurelay_client import AsyncClient, Client, GpurelayError, Unauthorized
from gpurelay_client._models import JobProgressPayload
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.http import bound_socket, serve

pytestmark = pytest.mark.timeout(60)


def frame(seq: int | None, type_: str, fraction: float = 0.0) -> str:
    """One SSE event whose data (an event envelope) spans two ``data:`` lines; no ``id:`` when ``seq`` is None."""
    head = f"id: {seq}\n" if seq is not None else ""
    envelope = json.dumps({"type": type_, "source": "test", "tenant": "t", "data": {"fraction": fraction}})
    first, _, rest = envelope.partition('"data"')
    return f'{head}event: {type_}\ndata: {first}\ndata: "data"{rest}\n\n'


def recorded_sse(seen: list[str | None]) -> Starlette:
    """A stand-in SSE endpoint: drops the first connection, ends the second early, finishes on the third."""

    async def events(request: Request) -> Response:
        last = request.headers.get("last-event-id")
        seen.append(last)
        if request.headers.get("authorization") != "Bearer k":
            return JSONResponse({"status": 401, "title": "Unauthorized", "detail": "no key"}, status_code=401)
        if last is None:

            async def dropping() -> AsyncIterator[str]:
                yield "retry: 20\n\n: hello\n\n" + frame(1, "job.started") + frame(2, "job.progress", 0.5)
                raise RuntimeError("connection dropped")

            return StreamingResponse(dropping(), media_type="text/event-stream")
        body = frame(int(last) + 1, "job.progress", 0.7) + frame(None, "job.progress", 0.6)
        if last == "3":
            body = frame(4, "job.succeeded", 1.0)
        return Response(body, media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/jobs/{job_id}/events", events)])


async def test_a_dropped_or_ended_stream_resumes_with_last_event_id_and_a_401_raises() -> None:
    seen: list[str | None] = []
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with serve(recorded_sse(seen), sock):
        async with AsyncClient(url, api_key="k") as client:
            events = [e async for e in client.jobs.stream("job_1")]
        async with AsyncClient(url, api_key="") as keyless:
            with pytest.raises(Unauthorized) as refused:
                _ = [e async for e in keyless.jobs.stream("job_1")]
    assert [(e.id, e.type) for e in events] == [
        ("1", "job.started"),
        ("2", "job.progress"),
        ("3", "job.progress"),
        ("3", "job.progress"),  # an event without an id keeps the last one
        ("4", "job.succeeded"),
    ]
    assert events[1].data == JobProgressPayload(fraction=0.5)
    assert events[1].envelope.data == {"fraction": 0.5}
    assert seen[:3] == [None, "2", "3"]
    assert refused.value.status == 401
    assert refused.value.detail == "no key"


async def test_a_503_is_waited_out() -> None:
    calls: list[int] = []

    async def events(request: Request) -> Response:
        calls.append(1)
        if len(calls) == 1:  # the notifier's NATS is away for a moment
            return JSONResponse({"status": 503}, status_code=503, headers={"Retry-After": "0"})
        return Response(frame(1, "job.succeeded", 1.0), media_type="text/event-stream")

    sock = bound_socket()
    with serve(Starlette(routes=[Route("/v1/jobs/{job_id}/events", events)]), sock):
        async with AsyncClient(f"http://127.0.0.1:{sock.getsockname()[1]}", api_key="k") as client:
            got = [e async for e in client.jobs.stream("job_1")]
    assert [(e.id, e.type) for e in got] == [("1", "job.succeeded")]
    assert len(calls) == 2


def silent_then_done(openings: list[str | None], released: threading.Event) -> Starlette:
    """A stand-in SSE endpoint whose first connection sends one event and then nothing, never closing (a
    host that died without a word); a later one sends the rest."""

    async def events(request: Request) -> Response:
        last = request.headers.get("last-event-id")
        openings.append(last)
        if last is None:

            async def silent() -> AsyncIterator[str]:
                yield frame(1, "job.started")
                await asyncio.to_thread(released.wait, 30)  # no keep-alive either, until the test ends

            return StreamingResponse(silent(), media_type="text/event-stream")
        return Response(frame(2, "job.succeeded", 1.0), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/jobs/{job_id}/events", events)])


async def test_a_stream_silent_past_its_idle_timeout_is_resumed_in_both_twins() -> None:
    openings: list[str | None] = []
    released = threading.Event()
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with serve(silent_then_done(openings, released), sock):
        try:
            async with AsyncClient(url, api_key="k", stream_idle_timeout=0.5) as client:
                async with asyncio.timeout(20):  # without the idle timeout the read waits for good
                    got = [(e.id, e.type) async for e in client.jobs.stream("job_1")]

            def blocking() -> list[tuple[str | None, str]]:
                with Client(url, api_key="k", stream_idle_timeout=0.5) as sync:
                    return [(e.id, e.type) for e in sync.jobs.stream("job_1")]

            sync_got = await asyncio.wait_for(asyncio.to_thread(blocking), 20)
        finally:
            released.set()
    assert got == sync_got == [("1", "job.started"), ("2", "job.succeeded")]
    assert openings == [None, "1", None, "1"]


def test_a_stream_idle_timeout_must_be_positive() -> None:
    with pytest.raises(GpurelayError, match="stream_idle_timeout"):
        Client("http://127.0.0.1:9", api_key="k", stream_idle_timeout=0)
