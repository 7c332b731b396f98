"""The SSE routes' query: a bad ``Last-Event-ID`` or ``?after=`` is a 422 before any stream; ``?ping=event``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
from nats.js.kv import KeyValue

from services.common.auth.apikeys import ApiKeyStore
from tests.notifier.sse.client import SseReader
from tests.support.events import create_job
from tests.support.notifier import Notifier

UINT64_MAX = 2**64 - 1
BAD = {
    "arabic-indic digits": "١٢",
    "a superscript digit": "²",
    "thirty digits": "1" * 30,
    "uint64 max (after + 1 overflows)": str(UINT64_MAX),
    "a sign": "-1",
    "an exponent": "1e3",
    "a word": "latest",
}


def _raw(value: str) -> bytes:
    """The header's bytes as a client may send them: Latin-1 where it can (servers decode it so), else UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


@pytest.fixture
async def acme_http(notifier: Notifier, keys: ApiKeyStore) -> AsyncIterator[httpx.AsyncClient]:
    """A notifier client with an API key of tenant acme."""
    _, key = await keys.create("acme")
    async with httpx.AsyncClient(
        base_url=notifier.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        yield client


async def _assert_problem(http: httpx.AsyncClient, path: str, where: str, **kwargs: object) -> None:
    """``path`` answers a 422 problem naming ``where`` (an SSE stream, should it start, is not read)."""
    async with http.stream("GET", path, **kwargs) as response:  # type: ignore[arg-type]
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        body = json.loads(await response.aread())
    assert body["status"] == 422
    assert [e["loc"] for e in body["errors"]] == [where.split(".")]


@pytest.mark.parametrize("value", list(BAD.values()), ids=list(BAD))
async def test_a_bad_last_event_id_is_a_422_before_the_stream(
    acme_http: httpx.AsyncClient, jobs_kv: KeyValue, value: str
) -> None:
    job_id = await create_job(jobs_kv, "acme")
    for path in (f"/v1/jobs/{job_id}/events", "/v1/events"):
        await _assert_problem(acme_http, path, "header.last-event-id", headers={"Last-Event-ID": _raw(value)})


@pytest.mark.parametrize("value", list(BAD.values()), ids=list(BAD))
async def test_a_bad_after_is_a_422_before_the_stream(
    acme_http: httpx.AsyncClient, jobs_kv: KeyValue, value: str
) -> None:
    job_id = await create_job(jobs_kv, "acme")
    for path in (f"/v1/jobs/{job_id}/events", "/v1/events"):
        await _assert_problem(acme_http, path, "query.after", params={"after": value})


@pytest.mark.parametrize("where", ["header", "query"])
async def test_the_largest_resume_point_streams(acme_http: httpx.AsyncClient, where: str) -> None:
    largest = str(UINT64_MAX - 1)  # after + 1 is the largest stream sequence JetStream takes
    headers, params = ({"Last-Event-ID": largest}, {}) if where == "header" else ({}, {"after": largest})
    async with acme_http.stream("GET", "/v1/events", headers=headers, params=params) as response:
        assert response.status_code == 200
        reader = SseReader(response.aiter_lines())
        hello = await reader.next(comments=True)
        assert hello is not None
        assert hello.comment == "gpurelay events"
        ping = await reader.next(timeout_s=5, comments=True)  # the stream stays open (no early end)
        assert ping is not None
        assert not reader.ended


async def test_ping_event_makes_the_keep_alive_an_event_a_page_sees(
    acme_http: httpx.AsyncClient, jobs_kv: KeyValue
) -> None:
    """``?ping=event``: the keep-alive is a ``ping`` event with data (an EventSource hands those to its page,
    never a comment), and no id (the resume point stays the last event's); any other value is a 422."""
    async with acme_http.stream("GET", "/v1/events", params={"ping": "event"}) as response:
        assert response.status_code == 200
        reader = SseReader(response.aiter_lines())
        frame = await reader.next(timeout_s=5)  # data frames only: the hello is a comment
        assert frame is not None
        assert (frame.event, frame.id) == ("ping", None)
        assert datetime.fromisoformat(frame.data).tzinfo is not None
    async with acme_http.stream("GET", "/v1/events") as response:  # the default: comments only
        reader = SseReader(response.aiter_lines())
        frames = [await reader.next(timeout_s=5, comments=True) for _ in range(3)]  # hello, retry hint, ping
        assert [(f.comment or "")[:4] for f in frames if f is not None] == ["gpur", "", "ping"]
        assert [f.event for f in frames if f is not None] == [None, None, None]
    job_id = await create_job(jobs_kv, "acme")
    await _assert_problem(acme_http, f"/v1/jobs/{job_id}/events", "query.ping", params={"ping": "frame"})
