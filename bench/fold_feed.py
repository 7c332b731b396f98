"""What feeding the fold costs nats-server per job event: the sourced copy it read against a partition token.

The measurement behind issue 34's largest step. Until 2026-11-30 the fold read ``JOBS_FOLD``, a
work-queue stream that sourced JOBS' job events with a subject transform into ``fold.{partition}.…``:
every event is stored (and fsynced) twice, delivered
twice (once into the copy, once to the fold) and acked one by one (a work queue refuses ``AckAll``,
error 10098). The other way measured here, which the product took (JOBS' slots,
:mod:`services.dispatcher.fold.partitions`), keeps one copy: JOBS itself stores each job event with a
trailing partition token (a stream ``subject_transform`` ``jobs.*.*.*`` →
``jobs.{tenant}.{job}.{event}.{{partition(8,1,2)}}``), and each partition's consumer filters
``jobs.*.*.*.{p}`` on JOBS and acks a batch with one ``AckAll`` ack (or, measured too, each event as
today: what the copy costs apart from the acks).

Both run on a fresh :class:`EmbeddedNats` each (``sync_interval: always``, as gpurelay runs it):
:data:`JOBS` jobs of :data:`EVENTS` events (``created`` … ``succeeded``, ~350 bytes, as the no-op
job's), :data:`IN_FLIGHT` jobs at a time, each job's events one after another; 8 partition consumers
fold what comes in batches of up to 512. Figures: nats-server's CPU (user + system, ``/proc``) and
the messages it routes (a subscriber on ``>``), per event, from the first publish until every event
is acked; the median of :data:`REPEATS` runs of each, the ways alternating. The values are the
partition token's, the baseline today's copy. Only nats-server is measured: the fold's own work
(Python) is the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPEATS, Result, format_table
from services.common.nats.server.config import SYNC_ALWAYS
from services.common.nats.server.embedded import EmbeddedNats

PARTITIONS = 8
JOBS = 400
EVENTS = ("created", "queued", "dispatched", "started", "succeeded")
IN_FLIGHT = 50
BATCH = 512
BODY = b"x" * 350
TIMEOUT_S = 120.0
COPY_TRANSFORM = SubjectTransform(
    src="jobs.*.*.*", dest="fold.{{partition(8,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"
)
TOKEN_TRANSFORM = SubjectTransform(
    src="jobs.*.*.*", dest="jobs.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}.{{partition(8,1,2)}}"
)
NOTES = [
    "fold_feed: a nats-server per run (sync_interval always), 400 jobs of 5 events (~350 bytes), 50 jobs in "
    "flight, each job's events one after another; 8 partition consumers fold batches of up to 512. Values: JOBS "
    "storing each job event with a trailing partition token (a stream subject_transform), each partition's "
    "consumer on JOBS acking a batch with one AckAll ack, or each event as today. Baseline: today's JOBS_FOLD, "
    "a work-queue copy sourced from JOBS by a subject transform, each event acked. nats-server's CPU and the "
    "messages it routes, per event, the median of 3 runs of each, alternating. Where the saving is: the copy "
    "(stored and fsynced a second time, delivered into the copy, the source's flow control), not the acks: "
    "AckAll saves messages but next to no CPU. The token keeps the fences the platform uses (checked on "
    "nats-server 2.15.1): Nats-Expected-Last-Subject-Sequence on a publish's own subject is checked against "
    "its stored (transformed) subject; one naming another subject must name it as stored, or as "
    "jobs.{tenant}.{job}.{event}.*, exact since a job has one partition. In the product since 2026-11-30 (32 "
    "slots, each partition a set of them; each event acked).",
]


class Way(enum.Enum):
    """How the fold is fed."""

    COPY = "the sourced JOBS_FOLD copy, each event acked (today)"
    TOKEN = "the partition token on JOBS, each event acked"
    TOKEN_ACK_ALL = "the partition token on JOBS, a batch acked by its last event (AckAll)"


@dataclass(frozen=True)
class FeedCost:
    """One run's figures per event."""

    cpu_ms: float
    messages: float


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _declare(js: JetStreamContext, way: Way) -> tuple[str, str, AckPolicy]:
    """The streams of one way; the stream, the filter (``{p}``: the partition) and the ack policy the
    fold's consumers read with."""
    if way is not Way.COPY:
        config = StreamConfig(name="JOBS", subjects=["jobs.>"], storage=StorageType.FILE)
        config.subject_transform = TOKEN_TRANSFORM
        await js.add_stream(config)
        return "JOBS", "jobs.*.*.*.{p}", AckPolicy.ALL if way is Way.TOKEN_ACK_ALL else AckPolicy.EXPLICIT
    await js.add_stream(StreamConfig(name="JOBS", subjects=["jobs.>"], storage=StorageType.FILE))
    source = StreamSource(name="JOBS", subject_transforms=[COPY_TRANSFORM])
    await js.add_stream(
        StreamConfig(name="FOLD", retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE, sources=[source])
    )
    return "FOLD", "fold.{p}.>", AckPolicy.EXPLICIT


async def _fold(nc: NatsClient, stream: str, durable: str, subject: str, policy: AckPolicy,
                folded: list[int], done: asyncio.Event) -> None:  # fmt: skip
    """One partition: pull batches and ack them (each event, or the last with ``AckAll``), as plain
    publishes, as the fold's are."""
    js = nc.jetstream()
    config = ConsumerConfig(durable_name=durable, ack_policy=policy, filter_subject=subject, max_ack_pending=BATCH * 2)
    await js.add_consumer(stream, config)
    psub = await js.pull_subscribe_bind(durable, stream)
    while not done.is_set():
        try:
            msgs = await psub.fetch(BATCH, timeout=0.5)
        except TimeoutError:  # nats-py raises its own or asyncio's, by where the wait ran out
            continue
        for msg in msgs if policy is AckPolicy.EXPLICIT else msgs[-1:]:
            await nc.publish(msg.reply, b"+ACK")
        folded[0] += len(msgs)
        if folded[0] >= JOBS * len(EVENTS):
            done.set()


async def feed_cost(way: Way) -> FeedCost:
    """One run of one way on a fresh server."""
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp), sync_interval=SYNC_ALWAYS) as server:
        assert server.pid is not None
        nc, counter = await nats.connect(server.url), await nats.connect(server.url)
        routed = 0

        async def count(_: Msg) -> None:
            nonlocal routed
            routed += 1

        folded, done, tasks = [0], asyncio.Event(), []
        try:
            await counter.subscribe(">", cb=count, pending_msgs_limit=1_000_000)
            js = nc.jetstream()
            stream, subject, policy = await _declare(js, way)
            for p in range(PARTITIONS):
                filtered = subject.format(p=p)
                tasks.append(asyncio.create_task(_fold(nc, stream, f"fold-{p}", filtered, policy, folded, done)))
            await asyncio.sleep(1.0)  # every consumer made and pulling
            await counter.flush()
            routed_before, cpu_before = routed, _cpu_s(server.pid)

            async def job(n: int) -> None:
                for event in EVENTS:
                    await js.publish(f"jobs.t{n % 7}.j{n}.{event}", BODY)

            for first in range(0, JOBS, IN_FLIGHT):
                await asyncio.gather(*(job(n) for n in range(first, first + IN_FLIGHT)))
            await asyncio.wait_for(done.wait(), TIMEOUT_S)
            await asyncio.sleep(0.3)  # the last acks handled
            cpu = _cpu_s(server.pid) - cpu_before
            await counter.flush()
            await asyncio.sleep(0.1)
            events = JOBS * len(EVENTS)
            return FeedCost(cpu * 1000 / events, (routed - routed_before) / events)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks, return_exceptions=True)
            await nc.close()
            await counter.close()


async def measure(repeats: int = REPEATS) -> list[Result]:
    """The median figures of ``repeats`` runs of each way, alternating."""
    runs: dict[Way, list[FeedCost]] = {way: [] for way in Way}
    for _ in range(repeats):
        for way in Way:
            runs[way].append(await feed_cost(way))

    def median(way: Way, figure: str) -> float:
        return float(statistics.median(getattr(cost, figure) for cost in runs[way]))

    baseline = "(baseline: the sourced JOBS_FOLD copy, each event acked)"
    results = []
    for way, what in ((Way.TOKEN_ACK_ALL, "AckAll"), (Way.TOKEN, "each event acked")):
        for figure, label, unit in (("cpu_ms", "nats-server CPU", "ms"), ("messages", "NATS messages", "messages")):
            name = f"fold feed: {label} per job event, the partition token on JOBS, {what} {baseline}"
            results.append(Result.compare(name, median(way, figure), unit, median(Way.COPY, figure)))
    return results


def run() -> list[Result]:
    """Entry point for ``bench/run.py``."""
    started = time.monotonic()
    results = asyncio.run(measure())
    print(f"fold_feed: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return results


if __name__ == "__main__":
    print(format_table(run()))
