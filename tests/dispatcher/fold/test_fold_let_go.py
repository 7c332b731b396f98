"""A replica that pins a partition again right after it let go of it, with everything acknowledged, has no
holder's leftovers to gather: its first delivery's consumer sequence follows its own last, so no one was
delivered anything meanwhile. It folds without counting the unacknowledged events (a consumer info: a
request, its reply and an API advisory per pin, issue 34); any other first delivery is counted as before."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.message_counter import MessageCounter
from bench.harness.waiting import wait_for
from contracts.job_parts import JobStatus
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.fold.handover import _settled_delivery, next_after_let_go
from services.dispatcher.fold.partition import QUIET_AFTER_S
from services.dispatcher.fold.partitions import fold_durable
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, fold_pin, local_route, submit, wait_record

pytestmark = pytest.mark.timeout(120)


def delivered(consumer_seq: int, times: int = 1) -> Msg:
    """A message as the fold consumer delivers it (its ack subject says how often and at which sequence)."""
    reply = f"$JS.ACK.JOBS_FOLD.dispatcher-fold-0.{times}.{100 + consumer_seq}.{consumer_seq}.1700000000000000000.0"
    return Msg(_client=None, subject="t.fold.0.acme.job_1.created", reply=reply)  # type: ignore[arg-type]


def after_let_go(let_go_at: int | None, msgs: list[Msg]) -> bool:
    return next_after_let_go(let_go_at, msgs)


def test_only_first_deliveries_right_after_its_own_last_skip_the_count() -> None:
    assert after_let_go(7, [delivered(8), delivered(9)])
    assert not after_let_go(None, [delivered(8)])  # it never let go with everything settled
    assert not after_let_go(7, [delivered(9)])  # someone else was delivered 8: maybe left unacknowledged
    assert not after_let_go(7, [delivered(8, times=2)])  # a redelivery is a holder's leftover
    assert not after_let_go(7, [delivered(8), delivered(9, times=2)])
    assert not after_let_go(7, [])


def test_a_start_takes_the_last_delivery_only_when_nothing_is_unacknowledged() -> None:
    assert _settled_delivery({"num_ack_pending": 0, "delivered": {"consumer_seq": 41, "stream_seq": 90}}) == 41
    assert _settled_delivery({"delivered": {"consumer_seq": 0}}) == 0  # a new consumer
    assert _settled_delivery({"num_ack_pending": 2, "delivered": {"consumer_seq": 41}}) is None
    assert _settled_delivery(None) is None


async def test_a_partition_pinned_again_after_letting_go_folds_without_counting_leftovers(
    start_dispatcher: StartDispatcher,
    nats_server: EmbeddedNats,
    nc: NatsClient,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
) -> None:
    """One replica, one partition: a job, the partition quiet (pin given back), then a job more: it is
    folded to its end and no consumer info of the partition is asked for (one per pin before)."""
    await start_dispatcher({"pose": local_route("noop")}, fold_partitions=1)
    stream, durable = namespace.stream(JOBS), fold_durable(0)
    await event_log.wait_ended([await submit(js, jobs_kv, subjects, POSE)], within_s=30)

    async def unpinned() -> bool:
        return await fold_pin(nc, stream, durable) is None

    counter = MessageCounter()
    await counter.start(nats_server.url)
    try:
        for _ in range(2):
            await wait_for(unpinned, QUIET_AFTER_S + 10, "the pin given back (the partition quiet)", every_s=0.2)
            async with counter.window() as tally:
                job = await submit(js, jobs_kv, subjects, POSE)
                await event_log.wait_ended([job], within_s=30)
            assert event_log.types(job)[-1] == "job.succeeded"
            assert (await wait_record(jobs_kv, job, lambda r: r.terminal)).status is JobStatus.SUCCEEDED
            # Only the partition's own: the scheduler's sweep may ask the dispatch consumer while the job is due.
            partition_info = f"$JS.API.CONSUMER.INFO.{stream}.{durable}"
            infos = sum(
                n for (kind, src), n in tally.sources.items() if kind == "consumer info" and src == partition_info
            )
            assert infos == 0, tally.breakdown(30)
    finally:
        await counter.stop()
