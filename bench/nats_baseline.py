"""NATS baseline: what one nats-server and nats-py move on this machine.

Starts its own :class:`EmbeddedNats` in a temporary directory, on NATS' default ``sync_interval``
(:data:`SYNC_INTERVAL`: what nats-server itself moves; gpurelay's fsync of every write is measured by
:mod:`bench.durability`), and measures, on ~128-byte messages (medians of :data:`REPEATS` runs):

1. core publish/subscribe: a publisher and a subscriber connection, time until all are received;
2. JetStream ``publish_async`` into a file stream, waiting for every ack
   (``publish_async_completed``), against one awaited ``js.publish`` at a time (smaller count);
3. replay of the stored messages with an ordered consumer (``ordered_consumer=True``) against a
   pull consumer's ``fetch`` loop of batch 100; both consumers are ephemeral with no acks.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck, StorageType, StreamConfig

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPEATS, Result, format_table, median_async, rate
from services.common.nats.server.embedded import EmbeddedNats

MESSAGES = 100_000
AWAITED_MESSAGES = 5_000
FETCH_BATCH = 100
PAYLOAD = os.urandom(64).hex().encode()  # 128 bytes
TIMEOUT_S = 60.0
STREAM = "BENCH"
SYNC_INTERVAL = "2m"
"""NATS' default: with gpurelay's ``always`` a flood of 100,000 un-awaited publishes outruns its acks
(nats-py refuses more than 4,000 outstanding), and the figures would measure the disk, not NATS."""
SUBJECT = "bench.js.telemetry"

# What the design counts on (msgs/s), e.g. a hundred robots at 100 Hz for JetStream telemetry.
TARGET_CORE = 50_000.0
TARGET_PUBLISH = 10_000.0
TARGET_REPLAY = 10_000.0

NOTES = [
    f"nats_baseline: the server runs NATS' default sync_interval ({SYNC_INTERVAL}); gpurelay runs 'always' "
    "(the durability rows measure the difference).",
    "nats_baseline: `publish_async` is called without `wait_stall`; with one, nats-py runs "
    "`asyncio.wait_for` per message (a task each on Python 3.11), about 5x slower here.",
    "nats_baseline: both replay consumers are ephemeral with ack policy none; the ordered consumer "
    "is a push consumer with flow control, the pull baseline makes one fetch request per 100 messages.",
]


async def _connect(url: str, name: str) -> NatsClient:
    return await nats.connect(url, name=name, connect_timeout=5, max_reconnect_attempts=0)


async def core_pubsub(url: str, count: int = MESSAGES) -> float:
    """msgs/s from the first publish until the subscriber has received ``count`` messages."""
    pub, sub_nc = await _connect(url, "bench-pub"), await _connect(url, "bench-sub")
    try:
        done = asyncio.Event()
        received = 0

        async def on_msg(_: Msg) -> None:
            nonlocal received
            received += 1
            if received >= count:
                done.set()

        subject = f"bench.core.{time.monotonic_ns()}"
        await sub_nc.subscribe(subject, cb=on_msg, pending_msgs_limit=count * 2)
        await sub_nc.flush()
        start = time.perf_counter()
        for _ in range(count):
            await pub.publish(subject, PAYLOAD)
        await pub.flush()
        try:
            await asyncio.wait_for(done.wait(), TIMEOUT_S)
        except TimeoutError as exc:
            raise RuntimeError(f"core pub/sub: {received}/{count} received in {TIMEOUT_S}s") from exc
        return rate(count, time.perf_counter() - start)
    finally:
        await pub.close()
        await sub_nc.close()


async def _reset_stream(js: JetStreamContext) -> None:
    await js.purge_stream(STREAM)


async def js_publish_async(js: JetStreamContext, count: int = MESSAGES) -> float:
    """msgs/s of ``publish_async`` until every ack has come back; leaves ``count`` stored."""
    await _reset_stream(js)

    async def publish_all() -> list[asyncio.Future[PubAck]]:
        # No wait_stall: with one, every call runs asyncio.wait_for (a task per message on 3.11),
        # which yields to the loop each time and costs about 5x here.
        futures = [await js.publish_async(SUBJECT, PAYLOAD) for _ in range(count)]
        await js.publish_async_completed()
        return futures

    start = time.perf_counter()
    futures = await asyncio.wait_for(publish_all(), TIMEOUT_S)
    elapsed = time.perf_counter() - start
    failed = sum(1 for f in futures if f.exception() is not None)
    if failed:
        raise RuntimeError(f"publish_async: {failed}/{count} publishes failed")
    return rate(count, elapsed)


async def js_publish_awaited(js: JetStreamContext, count: int = AWAITED_MESSAGES) -> float:
    """msgs/s of one awaited ``js.publish`` after another."""
    await _reset_stream(js)
    start = time.perf_counter()
    for _ in range(count):
        await js.publish(SUBJECT, PAYLOAD, timeout=TIMEOUT_S)
    return rate(count, time.perf_counter() - start)


async def replay_ordered(js: JetStreamContext, count: int) -> float:
    """msgs/s of an ordered push consumer reading the stream from the start."""
    done = asyncio.Event()
    received = 0

    async def on_msg(_: Msg) -> None:
        nonlocal received
        received += 1
        if received >= count:
            done.set()

    start = time.perf_counter()
    sub = await js.subscribe(SUBJECT, stream=STREAM, cb=on_msg, ordered_consumer=True)
    try:
        await asyncio.wait_for(done.wait(), TIMEOUT_S)
    except TimeoutError as exc:
        raise RuntimeError(f"ordered replay: {received}/{count} received in {TIMEOUT_S}s") from exc
    finally:
        await sub.unsubscribe()
    return rate(count, time.perf_counter() - start)


async def replay_pull(js: JetStreamContext, count: int, batch: int = FETCH_BATCH) -> float:
    """msgs/s of a pull consumer fetching ``batch`` at a time from the start of the stream."""
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL)
    start = time.perf_counter()
    psub = await js.pull_subscribe(SUBJECT, stream=STREAM, config=config)
    received = 0
    try:
        while received < count:
            if time.perf_counter() - start > TIMEOUT_S:
                raise RuntimeError(f"pull replay: {received}/{count} received in {TIMEOUT_S}s")
            received += len(await psub.fetch(min(batch, count - received), timeout=5))
        return rate(count, time.perf_counter() - start)
    finally:
        await psub.unsubscribe()


async def measure(repeats: int = REPEATS, count: int = MESSAGES, awaited: int = AWAITED_MESSAGES) -> list[Result]:
    """Every figure of this benchmark against a fresh server."""
    with (
        tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp,
        EmbeddedNats(Path(tmp), sync_interval=SYNC_INTERVAL) as server,
    ):
        core = await median_async(lambda: core_pubsub(server.url, count), repeats)
        nc = await _connect(server.url, "bench-js")
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name=STREAM, subjects=["bench.js.>"], storage=StorageType.FILE))
            sequential = await median_async(lambda: js_publish_awaited(js, awaited), repeats)
            publish = await median_async(lambda: js_publish_async(js, count), repeats)
            stored = (await js.stream_info(STREAM)).state.messages
            if stored != count:
                raise RuntimeError(f"stream holds {stored} messages, expected {count}")
            pull = await median_async(lambda: replay_pull(js, count), repeats)
            ordered = await median_async(lambda: replay_ordered(js, count), repeats)
        finally:
            await nc.close()
    unit = "msgs/s"
    return [
        Result.compare("nats core pub/sub (1 pub, 1 sub)", core, unit, None, TARGET_CORE),
        Result.compare(
            "jetstream publish_async, all acked (baseline: awaited publish)",
            publish,
            unit,
            sequential,
            TARGET_PUBLISH,
        ),
        Result.compare(
            "jetstream ordered-consumer replay (baseline: pull fetch 100)", ordered, unit, pull, TARGET_REPLAY
        ),
    ]


def run() -> list[Result]:
    """Run the NATS baseline, print its table and return its figures."""
    results = asyncio.run(measure())
    print(format_table(results))
    return results


if __name__ == "__main__":
    run()
