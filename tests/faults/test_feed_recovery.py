"""An SSE feed outlives the loss of its JetStream consumer: it resumes after the last event it read.

The feed's consumer is ephemeral and in memory: a nats-server restart forgets it, and so does the
death of the cluster node holding it, with the feed's pull request. The feed notices (its pull's
idle heartbeats stop) and makes a new consumer starting after the last sequence it queued, so its
client sees every event once, in order, and never has to reconnect.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from bench.harness.fault_stack import connect_test_client
from services.common.nats.publish import MSG_ID, until_stored
from services.common.nats.server.embedded import EmbeddedNats
from services.notifier.sse.feed import Feed

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]


async def _publish(js: JetStreamContext, count: int) -> list[int]:
    """``count`` events, each published until stored (the server may be coming back), once by its id."""
    seqs = []
    for _ in range(count):
        headers = {MSG_ID: uuid.uuid4().hex}
        ack = await until_stored(lambda h=headers: js.publish("s.a", b'{"type": "job.log"}', headers=h), "s.a")
        seqs.append(ack.seq)
    return seqs


async def _read(feed: Feed, count: int) -> list[int]:
    seqs: list[int] = []
    async with asyncio.timeout(15):
        while len(seqs) < count and not feed.gone:
            if (item := await feed.get(1.0)) is not None:
                seqs.append(item.seq)
    return seqs


async def test_feed_resumes_after_nats_restart(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats").start()
    nc = await connect_test_client(server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="S", subjects=["s.>"]))
        async with Feed(nc, js, "S", ["s.>"], 0, 8, heartbeat_s=0.5) as feed:
            before = await _publish(js, 3)
            assert await _read(feed, 3) == before
            server.kill()
            server.start()
            after = await _publish(js, 20)  # more than the feed's buffer: it keeps pulling
            assert await _read(feed, 20) == after
            assert not feed.gone
            assert feed.recoveries == 1  # one new consumer, made by the feed itself
    finally:
        await nc.close()
        server.stop()
