"""The partitioned fold: partitions fold in parallel over 2 dispatchers and KV still equals fold(stream)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.events.jobs import (
    JobDispatchedPayload,
    JobHeartbeatPayload,
    JobProgressPayload,
    JobQueuedPayload,
    JobStartedPayload,
)
from contracts.events.registry import EventType
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.fold.partition_pulls import PIN_MARGIN_S
from services.dispatcher.fold.partitions import fold_durable, fold_settled, partition_filters
from services.dispatcher.fold.pinned.consumer import PinnedConsumer
from services.dispatcher.fold.pinned.pull import PinnedPull
from services.dispatcher.fold.records import fold, route_pricing
from services.dispatcher.settings import DispatcherSettings
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import (
    POSE,
    EventLog,
    local_route,
    read_record,
    record_writes,
    request_cancel,
    submit,
    wait_record,
)
from tests.support.events import job_event, publish

PARTITIONS = 4
BURST = 300
WAITS_ON_AN_UPLOAD = {"kind": "pose", "inputs": {"video": {"upload_id": "upl_never"}}}


@pytest.mark.parametrize("pin_hold_s", [0.02, 1.0], ids=["partitions-change-hands-often", "default-hold"])
async def test_random_interleavings_fold_in_parallel_and_kv_is_the_fold(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
    pin_hold_s: float,
) -> None:
    """Each partition's holder keeps the records it wrote while it holds the pin: with pins changing
    hands every few batches, a replica that gets one back must not fold on what it kept before."""
    routes = {"pose": local_route("noop", concurrency=16)}
    for _ in range(2):  # two replicas share every partition's consumer
        await start_dispatcher(routes, fold_partitions=PARTITIONS, fold_pin_hold_s=pin_hold_s)
    rng = random.Random(18)
    jobs = list(await asyncio.gather(*(submit(js, jobs_kv, subjects, POSE) for _ in range(40))))

    async def noise(job: str) -> None:
        """Events racing the job's own: progress, logs, now and then a cancel."""
        for _ in range(rng.randint(2, 8)):
            kind = rng.choice([EventType.JOB_PROGRESS, EventType.JOB_LOG])
            payload = JobProgressPayload(fraction=rng.random()) if kind == EventType.JOB_PROGRESS else None
            await publish(js, subjects, job_event("acme", job, kind, payload))
            await asyncio.sleep(rng.random() * 0.01)
        if rng.random() < 0.2:
            await request_cancel(js, subjects, job)

    await asyncio.gather(*(noise(job) for job in jobs))
    await event_log.wait_ended(jobs, 60)
    await wait_for(lambda: fold_settled(js, namespace, PARTITIONS), timeout_s=30, what="the fold settled")
    pricing = route_pricing({"pose": 3.6})
    for job in jobs:
        assert await read_record(jobs_kv, job) == fold(event_log.events[job], pricing)
    stream = namespace.stream(JOBS)
    folded = [(await js.consumer_info(stream, fold_durable(p))).delivered.stream_seq for p in range(PARTITIONS)]
    assert sum(1 for seq in folded if seq) >= 2  # the jobs spread over the partitions


async def test_a_burst_of_one_jobs_events_folds_in_a_few_writes_and_kv_is_the_fold(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
) -> None:
    """300 events already waiting when the fold starts: batches, so far fewer KV writes than events."""
    job = await submit(js, jobs_kv, subjects, WAITS_ON_AN_UPLOAD)  # stays `created`: only the burst moves it
    at = datetime.now(UTC)
    for n in range(BURST):
        beat = job_event("acme", job, EventType.JOB_HEARTBEAT, JobHeartbeatPayload())
        await publish(js, subjects, beat.model_copy(update={"time": at + timedelta(milliseconds=n)}))
    async with record_writes(jobs_kv, job) as writes:
        await start_dispatcher({"pose": local_route("noop")}, fold_partitions=PARTITIONS, fold_batch=64)
        last = at + timedelta(milliseconds=BURST - 1)
        await wait_record(jobs_kv, job, lambda r: r.heartbeat_at == last)
        await wait_for(lambda: fold_settled(js, namespace, PARTITIONS), timeout_s=30, what="the fold settled")
    assert await read_record(jobs_kv, job) == fold(event_log.events[job])
    folded = [record for record in writes if record.heartbeat_at is not None]
    assert 1 <= len(folded) <= 2 * BURST // 64 + 4, f"{len(folded)} writes for {BURST} events in batches of 64"


async def test_a_replica_that_stops_gives_its_partitions_back_at_once(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
) -> None:
    """A stopped holder unpins: the other replica folds its partitions at once, not after the pin's
    timeout (the ack wait + 2 s, here 22 s)."""
    overrides = {"fold_partitions": PARTITIONS, "event_ack_wait_s": 20.0, "fold_pin_hold_s": 60.0}
    first = await start_dispatcher({"pose": local_route("noop")}, **overrides)
    jobs = [await submit(js, jobs_kv, subjects, WAITS_ON_AN_UPLOAD) for _ in range(12)]
    await wait_for(lambda: fold_settled(js, namespace, PARTITIONS), timeout_s=30, what="the first replica folded")
    await start_dispatcher({"pose": local_route("noop")}, **overrides)
    await first.stop()
    at = datetime.now(UTC)
    for job in jobs:
        beat = job_event("acme", job, EventType.JOB_HEARTBEAT, JobHeartbeatPayload())
        await publish(js, subjects, beat.model_copy(update={"time": at}))
    for job in jobs:
        await wait_record(jobs_kv, job, lambda r: r.heartbeat_at == at, within_s=10)


@pytest.mark.parametrize("reads", ["whole", "one-at-a-time"])
async def test_redeliveries_out_of_stream_order_are_folded_in_stream_order(
    reads: str,
    monkeypatch: pytest.MonkeyPatch,
    start_dispatcher: StartDispatcher,
    settings: DispatcherSettings,
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
) -> None:
    """The server does not redeliver in stream order: a holder that dies with its pull open has the
    events stored afterwards queued for redelivery at once (nobody took them), ahead of its own,
    redelivered after the ack wait. Here a holder gives its events back newest first, which queues
    them so, then dies: the next holder must still fold each job's events in stream order (queued,
    dispatched, started: out of order, dispatched and started would be ignored and KV would not be
    the fold). ``one-at-a-time``: the redeliveries reach the new holder in separate reads (as a
    burst split over TCP segments can), so it must gather every unacknowledged one before folding."""
    consumer = PinnedConsumer(
        namespace.stream(JOBS), fold_durable(0), tuple(partition_filters(namespace, 0, 1)), ack_wait_s=1.0,
        max_deliver=settings.event_max_deliver, max_ack_pending=settings.fold_batch, pin_timeout_s=1.0 + PIN_MARGIN_S,
    )  # fmt: skip
    jobs = [await submit(js, jobs_kv, subjects, WAITS_ON_AN_UPLOAD) for _ in range(6)]
    for job in jobs:
        dispatched = JobDispatchedPayload(backend="local", function="pose", call_id=f"c-{job}")
        for type_, payload in (
            (EventType.JOB_QUEUED, JobQueuedPayload()),
            (EventType.JOB_DISPATCHED, dispatched),
            (EventType.JOB_STARTED, JobStartedPayload(worker="w")),
        ):
            await publish(js, subjects, job_event("acme", job, type_, payload))
    dying = await nats.connect(nats_server.url)
    await consumer.ensure(dying, None)
    holder = PinnedPull(dying, consumer)
    await holder.start()
    held: list[Msg] = []
    while len(held) < 4 * len(jobs):  # one request for exactly these: none is open after them
        held += await holder.batch(4 * len(jobs), 5.0)
    assert holder.idle
    for msg in reversed(held):  # the redelivery queue now holds them newest first
        await msg.nak()
    await dying.flush()
    await dying.close()

    if reads == "one-at-a-time":
        whole = PinnedPull.batch

        async def one(self: PinnedPull, size: int, wait_s: float, more: bool = True) -> list[Msg]:
            return await whole(self, 1, wait_s, more)

        monkeypatch.setattr(PinnedPull, "batch", one)
    await start_dispatcher({"pose": local_route("noop")}, fold_partitions=1, event_ack_wait_s=1.0, fold_linger_s=0.2)
    await wait_for(lambda: fold_settled(js, namespace, 1), timeout_s=20, what="the fold settled")
    for job in jobs:
        record = await read_record(jobs_kv, job)
        assert record == fold(event_log.events[job], route_pricing({"pose": 3.6}))
        assert record.call_id == f"c-{job}"
