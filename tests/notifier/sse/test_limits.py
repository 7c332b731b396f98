"""Concurrent SSE streams per tenant are capped: a 429 problem with Retry-After before any consumer is
made, and a slot comes back when a stream ends or its client goes away."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.subjects import Subjects
from services.common.auth.apikeys import ApiKeyStore
from tests.notifier.sse.client import SseReader
from tests.support.events import create_job, job_event, publish
from tests.support.notifier import Notifier, sse_streams

pytestmark = pytest.mark.parametrize("notifier_overrides", [{"sse_max_streams_per_tenant": 2}])


class Streams:
    """Open SSE streams of one client, each kept open until closed or the test ends."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.stack = contextlib.AsyncExitStack()
        self.open: dict[str, tuple[contextlib.AsyncExitStack, SseReader]] = {}

    async def start(self, name: str, path: str) -> httpx.Response:
        """Open ``path``; a stream that starts is kept (after its first comment) as ``name``."""
        stack = contextlib.AsyncExitStack()
        response = await stack.enter_async_context(self.http.stream("GET", path))
        if response.status_code != 200:
            await response.aread()
            await stack.aclose()
            return response
        reader = SseReader(response.aiter_lines())
        assert await reader.next(comments=True) is not None
        self.open[name] = (stack, reader)
        self.stack.push_async_callback(stack.aclose)
        return response

    async def close(self, name: str) -> None:
        """Disconnect stream ``name``."""
        stack, _ = self.open.pop(name)
        await stack.aclose()


@pytest.fixture
async def clients(notifier: Notifier, keys: ApiKeyStore) -> AsyncIterator[dict[str, Streams]]:
    """Stream clients of tenants acme and globex."""
    async with contextlib.AsyncExitStack() as stack:
        out = {}
        for tenant in ("acme", "globex"):
            _, key = await keys.create(tenant)
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=notifier.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            )
            out[tenant] = Streams(http)
            await stack.enter_async_context(out[tenant].stack)
        yield out


async def test_streams_per_tenant_are_capped_and_slots_come_back(
    clients: dict[str, Streams], notifier: Notifier, js: JetStreamContext, subjects: Subjects, jobs_kv: KeyValue
) -> None:
    acme, globex = clients["acme"], clients["globex"]
    job_id = await create_job(jobs_kv, "acme")
    assert (await acme.start("tenant", "/v1/events")).status_code == 200
    assert (await acme.start("job", f"/v1/jobs/{job_id}/events")).status_code == 200

    async def both_consumers() -> bool:
        return await sse_streams(notifier, js) == 2

    await wait_for(both_consumers, what="both streams' consumers")
    consumers = 2

    refused = await acme.start("third", "/v1/events")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["status"] == 429
    assert await sse_streams(notifier, js) == consumers  # refused before any consumer was made
    assert (await globex.start("other tenant", "/v1/events")).status_code == 200

    await acme.close("tenant")  # a client that goes away frees its slot

    async def reopened(name: str) -> bool:
        return (await acme.start(name, "/v1/events")).status_code == 200

    await wait_for(lambda: reopened("after disconnect"), what="a slot freed by a disconnect")
    assert (await acme.start("over", "/v1/events")).status_code == 429
    await publish(js, subjects, job_event("acme", job_id, EventType.JOB_SUCCEEDED))  # the job stream ends
    _, job_reader = acme.open["job"]
    assert (await job_reader.take(1))[0].event == "job.succeeded"
    assert await job_reader.next() is None
    await wait_for(lambda: reopened("after the end"), what="a slot freed by a stream's end")
