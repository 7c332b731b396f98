"""A delivery lost on the way to an SSE feed is read again, not skipped (services/notifier/sse/feed.py).

The feed's consumer acknowledges nothing, so the server never sends a message twice: one written to a
connection that resets while its pull goes on (the server keeps the pull, nats-py subscribes its inbox
again, the next message comes through it) was skipped for good, and the SSE reader following that job
missed it (tests/faults/test_cluster.py: attempt 1's ``job.started``, between the two it read). Here
the feed's connection loses one delivery (dropped before the feed sees it, as a reset connection
does): every event must still come, in order, once each. The last one too, though no later delivery shows
the gap: the pull's idle heartbeat says what the consumer delivered last (``Nats-Last-Consumer``), and a
job's terminal event lost so left its SSE reader waiting for good (test_cluster, a fresh clone's CI run).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from contracts.subjects import Namespace
from services.notifier.sse.feed import Feed

pytestmark = pytest.mark.timeout(30)
EVENTS = 12
LOST = 5
"""The data delivery (1-based) the connection loses."""


def losing_one(on_msg: Callable[[Msg], Awaitable[None]], lost: int = LOST) -> Callable[[Msg], Awaitable[None]]:
    """``on_msg`` behind a connection that loses the ``lost``-th data delivery, once."""
    seen = 0

    async def deliver(msg: Msg) -> None:
        nonlocal seen
        if msg.data:
            seen += 1
            if seen == lost:
                return
        await on_msg(msg)

    return deliver


@pytest.mark.parametrize("lost", [LOST, EVENTS], ids=["between", "last"])
async def test_a_delivery_lost_on_the_way_is_read_again_and_nothing_is_skipped(
    nc: NatsClient, namespace: Namespace, lost: int
) -> None:
    js = nc.jetstream()
    stream, subject = namespace.stream("FEED"), namespace.subject("feed.job_1.>")
    await js.add_stream(name=stream, subjects=[namespace.subject("feed.>")])
    for n in range(EVENTS):
        await js.publish(namespace.subject(f"feed.job_1.e{n}"), b'{"type": "job.log", "job_id": "job_1"}')
    feed = Feed(nc, js, stream, [subject], after=0, size=64, heartbeat_s=0.5)
    feed._on_msg = losing_one(feed._on_msg, lost)  # type: ignore[method-assign,assignment] # the connection's loss
    seqs: list[int] = []
    async with feed:
        with contextlib.suppress(TimeoutError):  # what came within 10 s is compared below
            async with asyncio.timeout(10):
                while len(seqs) < EVENTS:
                    item = await feed.get(1.0)
                    if item is not None:
                        seqs.append(item.seq)
    assert seqs == list(range(1, EVENTS + 1))
    assert feed.recoveries == 1
