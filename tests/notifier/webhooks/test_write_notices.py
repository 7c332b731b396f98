"""The endpoints cache asks its bucket only after a write was noticed, and never misses one made before
an event this connection received (single server: the write's notice comes first on the connection)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from bench.harness.message_counter import counting
from contracts.streams import KV_WEBHOOKS, Declarations
from contracts.subjects import Namespace
from services.common.nats.server.embedded import EmbeddedNats
from services.notifier.webhooks.targets import EndpointCache
from tests.support.events import create_endpoint


@contextlib.asynccontextmanager
async def watching(
    nats_server: EmbeddedNats, nc: NatsClient, js: JetStreamContext, namespace: Namespace
) -> AsyncIterator[tuple[EndpointCache, NatsClient, asyncio.Queue[object], str]]:
    """A started cache on ``nc``, a writer on another connection (the gateway), and a probe subject whose
    messages ``nc`` puts on the queue (an event stored after a write)."""
    bucket = namespace.bucket(KV_WEBHOOKS)
    cache = EndpointCache(await js.key_value(bucket), js, bucket)
    await cache.start()
    writer = await nats.connect(nats_server.url)
    events: asyncio.Queue[object] = asyncio.Queue()
    probe = f"{namespace.name}.probe"
    await nc.subscribe(probe, cb=events.put)
    try:
        yield cache, writer, events, probe
    finally:
        await writer.close()
        await cache.stop()


async def test_caught_up_asks_only_after_a_write_and_sees_every_write_made_before_an_event(
    nats_server: EmbeddedNats, nc: NatsClient, js: JetStreamContext, namespace: Namespace, declared: Declarations
) -> None:
    bucket = namespace.bucket(KV_WEBHOOKS)
    async with watching(nats_server, nc, js, namespace) as (cache, writer, events, probe):
        await cache.caught_up()  # the first call asks: nothing was checked yet
        async with counting(nats_server.url) as counter, counter.window() as idle:
            for _ in range(5):
                await cache.caught_up()
        assert not idle.kinds["stream info"], idle.breakdown()  # nothing written: nothing asked

        webhooks = await writer.jetstream().key_value(bucket)
        async with counting(nats_server.url) as counter, counter.window() as busy:
            for n in range(20):
                record = await create_endpoint(webhooks, "acme", f"http://127.0.0.1:9/{n}")
                await writer.publish(probe, b"an event stored after the write")
                await events.get()  # this connection has the event: the write's notice came before it
                await cache.caught_up()
                assert cache.get("acme", record.id) is not None, f"write {n} missed"
        assert busy.kinds["stream info"] >= 1  # a noticed write is checked


async def test_a_caller_finding_nothing_due_waits_for_the_check_on_its_way(
    nats_server: EmbeddedNats,
    nc: NatsClient,
    js: JetStreamContext,
    namespace: Namespace,
    declared: Declarations,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kick beside the fan-out's batch: the batch's call sends the check (the notices now count as
    checked); the kick's call finds nothing due, and must still not answer before that check is answered
    (else it may read the cache before the write is in, and its queue is taken for a deleted endpoint's
    and dropped). The check is made slow, as on a loaded server."""
    bucket = namespace.bucket(KV_WEBHOOKS)
    async with watching(nats_server, nc, js, namespace) as (cache, writer, events, probe):
        await cache.caught_up()
        answered: list[str] = []
        check, sent = cache._watch.caught_up, asyncio.Event()

        async def slow_check(*args: Any) -> None:
            sent.set()
            await asyncio.sleep(0.2)
            await check(*args)
            answered.append("check")

        monkeypatch.setattr(cache._watch, "caught_up", slow_check)
        webhooks = await writer.jetstream().key_value(bucket)
        for n in range(3):
            record = await create_endpoint(webhooks, "acme", f"http://127.0.0.1:9/{n}")
            await writer.publish(probe, b"an event stored after the write")
            await events.get()
            sent.clear()
            batch = asyncio.ensure_future(cache.caught_up())
            await sent.wait()  # the batch's call has sent its check
            await cache.caught_up()  # the kick's
            answered.append("kick")
            await batch
            assert answered == ["check", "kick"] * (n + 1), f"write {n}: answered before the check on its way"
            assert cache.get("acme", record.id) is not None
