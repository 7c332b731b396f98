"""A pull open on a fold partition's consumer when the consumer is deleted ends on the deletion's advisory.

The server may send no status to a request waiting on a consumer it deletes (a fresh-clone run's sent
no 409 to the uploads' long pull), and a quiet partition's pull lasts 30 s: so the partition waited that
long before its next pull was refused (503) and the consumer made again. This server does send a 409
"Consumer Deleted", so the puller here does not see it (as that run's did not get it): each test waits on
the open request and asserts the refusal, which only a request sent after the deletion gets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StreamConfig

from bench.harness.waiting import wait_for
from contracts.subjects import Namespace
from services.common.nats.connection import cancel_and_wait
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.fold.pinned.consumer import ConsumerUnavailable, PinnedConsumer
from services.dispatcher.fold.pinned.pull import PinnedPull

LONG_PULL_S = 60.0
"""Longer than the test's own time-out: only the advisory can end the request in time."""
pytestmark = pytest.mark.timeout(45)


@pytest.fixture
async def held(
    nats_server: EmbeddedNats, js: JetStreamContext, namespace: Namespace
) -> AsyncIterator[tuple[JetStreamContext, PinnedConsumer, PinnedPull]]:
    """A pinned consumer of a fresh stream and a client's puller on it (started: advisories heard)."""
    stream, subject = namespace.stream("DELETED"), namespace.subject("deleted.>")
    await js.add_stream(StreamConfig(name=stream, subjects=[subject], retention=RetentionPolicy.WORK_QUEUE))
    consumer = PinnedConsumer(stream, "fold", (subject,), ack_wait_s=30.0, max_deliver=3, max_ack_pending=64,
                              pin_timeout_s=32.0)  # fmt: skip
    client: NatsClient = await nats.connect(nats_server.url)
    await consumer.ensure(client, None)
    puller = PinnedPull(client, consumer)
    await puller.start()
    try:
        yield js, consumer, puller
    finally:
        await puller.close()
        await client.close()


@pytest.fixture(autouse=True)
def no_deleted_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """The puller never sees the server's 409 to its waiting request: the deletion's advisory has to end it."""
    take = PinnedPull._take

    def without_409(self: PinnedPull, msg: Msg) -> None:
        if (msg.headers or {}).get("Status") != "409":
            take(self, msg)

    monkeypatch.setattr(PinnedPull, "_take", without_409)


async def _waiting(js: JetStreamContext, consumer: PinnedConsumer) -> None:
    async def open_request() -> bool:
        return bool((await js.consumer_info(consumer.stream, consumer.durable)).num_waiting)

    await wait_for(open_request, timeout_s=10, what="the open pull on the consumer's books")


@pytest.mark.parametrize("pinned", [False, True], ids=["quiet", "holding the pin"])
async def test_a_deleted_consumers_open_pull_ends_and_the_next_is_refused(
    held: tuple[JetStreamContext, PinnedConsumer, PinnedPull], namespace: Namespace, pinned: bool
) -> None:
    js, consumer, puller = held
    if pinned:  # a holder: its pin came with a message
        await js.publish(namespace.subject("deleted.a"), b"first")
        (first,) = await puller.batch(64, 5.0)
        await first.ack_sync()
        assert puller.pin is not None
    pulling = asyncio.create_task(puller.batch(1, LONG_PULL_S))
    try:
        await _waiting(js, consumer)
        await js.delete_consumer(consumer.stream, consumer.durable)
        with pytest.raises(ConsumerUnavailable):
            await asyncio.wait_for(pulling, 30)
    finally:
        await cancel_and_wait([pulling])
    assert puller.idle  # nothing of the deleted consumer can still come

    await consumer.ensure(js._nc, None)  # as the partition does after a refusal
    await js.publish(namespace.subject("deleted.b"), b"after")
    (after,) = await puller.batch(1, 10.0)
    assert after.data == b"after"
