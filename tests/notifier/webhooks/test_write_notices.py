"""The endpoints cache asks its bucket only after a write was noticed, and never misses one made before
an event this connection received (single server: the write's notice comes first on the connection)."""

from __future__ import annotations

import asyncio

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from bench.harness.message_counter import counting
from contracts.streams import KV_WEBHOOKS, Declarations
from contracts.subjects import Namespace
from services.common.nats.embedded import EmbeddedNats
from services.notifier.webhooks.targets import EndpointCache
from tests.support.events import create_endpoint


async def test_caught_up_asks_only_after_a_write_and_sees_every_write_made_before_an_event(
    nats_server: EmbeddedNats, nc: NatsClient, js: JetStreamContext, namespace: Namespace, declared: Declarations
) -> None:
    bucket = namespace.bucket(KV_WEBHOOKS)
    cache = EndpointCache(await js.key_value(bucket), js, bucket)
    await cache.start()
    writer = await nats.connect(nats_server.url)  # the gateway: another connection
    events: asyncio.Queue[object] = asyncio.Queue()
    probe = f"{namespace.name}.probe"
    await nc.subscribe(probe, cb=events.put)
    try:
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
    finally:
        await writer.close()
        await cache.stop()
