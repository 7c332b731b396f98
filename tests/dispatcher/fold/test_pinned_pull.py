"""Pulling a pinned consumer while another client's pull waits on it (as the other replicas' always do)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from contracts.subjects import Namespace
from services.common.nats.connection import cancel_and_wait
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.fold.pinned.consumer import PinnedConsumer
from services.dispatcher.fold.pinned.pull import PinnedPull


@pytest.fixture
async def pullers(
    nats_server: EmbeddedNats, js: JetStreamContext, namespace: Namespace
) -> AsyncIterator[tuple[JetStreamContext, str, PinnedPull, PinnedPull]]:
    """Two clients' pullers on one pinned consumer of a fresh stream: the first holds the pin."""
    stream, subject = namespace.stream("PINNED"), namespace.subject("pinned.>")
    await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
    consumer = PinnedConsumer(stream, "fold", (subject,), ack_wait_s=30.0, max_deliver=3, max_ack_pending=256,
                              pin_timeout_s=32.0)  # fmt: skip
    clients: list[NatsClient] = [await nats.connect(nats_server.url) for _ in range(2)]
    await consumer.ensure(clients[0], None)
    holder, other = PinnedPull(clients[0], consumer), PinnedPull(clients[1], consumer)
    for puller in (holder, other):
        await puller.start()
    await js.publish(namespace.subject("pinned.a"), b"first")
    (first,) = await holder.batch(256, 1.0)
    await first.ack_sync()
    try:
        yield js, namespace.subject("pinned.a"), holder, other
    finally:
        for puller in (holder, other):
            await puller.close()
        for client in clients:
            await client.close()


async def pull_forever(puller: PinnedPull) -> None:
    """The other replica's loop: pull and wait in line."""
    while True:
        await puller.batch(256, 1.0)


async def test_an_idle_holder_waits_in_its_pull_while_another_client_waits_too(
    pullers: tuple[JetStreamContext, str, PinnedPull, PinnedPull],
) -> None:
    """An idle holder's pull waits for its first message (about one pull a second), not asks again at once."""
    _, _, holder, other = pullers
    waiting = asyncio.create_task(pull_forever(other))
    try:
        await asyncio.sleep(0.2)  # the other's pull is on the consumer's books
        before, began = holder.requests.pulls, time.monotonic()
        while time.monotonic() - began < 2.0:
            assert await holder.batch(256, 1.0) == []
        assert holder.requests.pulls - before <= 8, f"{holder.requests.pulls - before} pulls in 2 s while idle"
    finally:
        await cancel_and_wait([waiting])  # cancelled again if 3.11's wait_for swallowed it


async def test_the_holder_gets_a_backlog_in_order_on_one_open_request_while_another_client_waits(
    pullers: tuple[JetStreamContext, str, PinnedPull, PinnedPull],
) -> None:
    """With messages there and another client's pull waiting, the holder gets the whole backlog, in
    order, streamed on the one request it keeps open (not a request per batch)."""
    js, subject, holder, other = pullers
    waiting = asyncio.create_task(pull_forever(other))
    try:
        await asyncio.sleep(0.2)
        for n in range(50):
            await js.publish(subject, str(n).encode())
        before, msgs = holder.requests.pulls, []
        while len(msgs) < 50:
            got = await holder.batch(256, 1.0)
            assert got, f"the backlog stopped after {len(msgs)}"
            msgs += got
            for msg in got:
                await msg.ack()
        assert [m.data for m in msgs] == [str(n).encode() for n in range(50)]
        assert holder.requests.pulls - before <= 1, "one open request carried them"
        assert other.pin is None  # only the holder was given any
    finally:
        await cancel_and_wait([waiting])  # cancelled again if 3.11's wait_for swallowed it


async def test_a_batch_cancelled_as_its_message_arrives_is_cancelled(
    pullers: tuple[JetStreamContext, str, PinnedPull, PinnedPull],
) -> None:
    """A cancel that lands in the same loop turn as the message ends the wait (3.11's ``wait_for`` returned
    the message instead, and a fold loop went on after its stop). The message is put in the puller's inbox
    queue by hand: that is the only way to make both land in one turn."""
    js, subject, holder, _ = pullers
    await js.publish(subject, b"second")
    (second,) = await holder.batch(256, 1.0)  # a real delivery, to hand in again below
    waiting = asyncio.create_task(holder.batch(256, 5.0))
    await asyncio.sleep(0.1)  # in its wait for the inbox
    holder._received.put_nowait(second)
    waiting.cancel()
    await asyncio.wait([waiting], timeout=5.0)
    assert waiting.cancelled()
