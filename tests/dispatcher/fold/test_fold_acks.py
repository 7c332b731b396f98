"""A fold partition's acks (services/dispatcher/fold/acks.py): one AckAll ack for the batches folded since
the last (issue 34: an ack per event), held only while every delivery of the pin came here, so it never
acknowledges an event delivered and lost on the way."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.message_counter import counting
from bench.harness.waiting import wait_for
from contracts.events import jobs as je
from contracts.events.registry import EventType
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects, event_token
from services.common.nats.embedded import EmbeddedNats
from services.dispatcher.fold.acks import BatchAcks
from services.dispatcher.fold.partition import FETCH_WAIT_S
from services.dispatcher.fold.partitions import fold_durable, fold_settled
from services.dispatcher.fold.pinned_pull import PinnedPull
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import local_route, wait_record
from tests.support.events import create_job, job_event, publish

EVENTS = 5


class Sent:
    """A stand-in for the connection: what was published and what was requested, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int, bytes]] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.log.append(("publish", int(subject.split(".")[-4]), data))

    async def request(self, subject: str, data: bytes, **_: object) -> None:
        self.log.append(("request", int(subject.split(".")[-4]), data))


def _msg(stream_seq: int, delivery_seq: int) -> Any:
    """A delivery of stream sequence ``stream_seq`` as the consumer's ``delivery_seq``-th."""
    reply = f"$JS.ACK.JOBS.fold.1.{stream_seq}.{delivery_seq}.0.0"
    return Msg(_client=None, subject="e", reply=reply)  # type: ignore[arg-type]


def _acks(hold_s: float = 60.0, most_held: int = 100) -> tuple[BatchAcks, Sent]:
    sent = Sent()
    return BatchAcks(sent, 1.0, hold_s, most_held), sent  # type: ignore[arg-type]


async def test_batches_folded_in_one_pin_are_acked_by_one_request_for_the_highest() -> None:
    acks, sent = _acks()
    acks.new_pin(0)
    for batch in ([_msg(3, 1)], [_msg(5, 2), _msg(4, 3)], [_msg(9, 4)]):
        assert not acks.see(batch)
        await acks.folded(batch, time.monotonic())
        await acks.release()  # held less than hold_s: kept for the next batch's ack
    assert sent.log == []
    await acks.confirm()
    await acks.confirm()  # nothing held: nothing sent
    assert sent.log == [("request", 9, b"+ACK")]


async def test_a_held_ack_goes_as_a_plain_ack_once_held_long_or_covering_many() -> None:
    acks, sent = _acks(hold_s=0.0)
    acks.new_pin(0)
    acks.see([_msg(1, 1)])
    await acks.folded([_msg(1, 1)], 0.0)
    await acks.release()
    assert sent.log == [("publish", 1, b"+ACK")]
    many, sent = _acks(most_held=3)
    many.new_pin(10)
    batch = [_msg(20 + n, 11 + n) for n in range(3)]
    many.see(batch)
    await many.folded(batch, 0.0)
    assert sent.log == [("publish", 22, b"+ACK")]
    assert many.held is None


async def test_a_nak_sends_the_held_ack_first_and_the_deliveries_it_gives_back_are_seen() -> None:
    acks, sent = _acks()
    acks.new_pin(0)
    acks.see([_msg(1, 1)])
    await acks.folded([_msg(1, 1)], 0.0)
    acks.see([_msg(2, 2)])
    await acks.nak([_msg(2, 2), _msg(3, 3)])  # 3: what the open request delivered meanwhile
    assert sent.log == [("publish", 1, b"+ACK"), ("publish", 2, b"-NAK"), ("request", 3, b"-NAK")]
    assert acks.through == 3
    assert acks.held is None
    assert not acks.see([_msg(2, 4), _msg(3, 5)])  # given back, delivered again: the sequence goes on


async def test_after_a_gap_nothing_is_acked_until_the_consumer_shows_every_unacknowledged_event_here() -> None:
    acks, sent = _acks()
    acks.new_pin(0)
    assert not acks.see([_msg(1, 1)])
    await acks.folded([_msg(1, 1)], 0.0)
    assert acks.see([_msg(3, 3)])  # delivery 2 (stream sequence 2) lost on the way
    assert not acks.safe
    await acks.folded([_msg(3, 3)], 0.0)
    assert acks.held is not None
    assert acks.held.reply.split(".")[-4] == "1"  # only what came before the gap
    behind = {"ack_floor": {"stream_seq": 0}, "delivered": {"consumer_seq": 3}, "num_ack_pending": 3}
    assert not acks.settle_with(behind)  # 1, 2 and 3 unacknowledged; 2 not here
    assert not acks.see([_msg(2, 4)])  # redelivered after its ack wait
    await acks.folded([_msg(2, 4)], 0.0)
    moved = {"ack_floor": {"stream_seq": 1}, "delivered": {"consumer_seq": 4}, "num_ack_pending": 2}
    assert acks.settle_with(moved)  # the held ack of 1 landed: 2 and 3 unacknowledged, both here
    assert acks.through == 4
    assert not acks.unsafe
    await acks.confirm()
    assert sent.log == [("request", 3, b"+ACK")]
    assert not acks.settle_with({**moved, "delivered": {"consumer_seq": 5}})  # a delivery not seen here


async def test_a_burst_of_events_is_acknowledged_with_fewer_acks_than_events(
    start_dispatcher: StartDispatcher,
    nats_server: EmbeddedNats,
    nc: NatsClient,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
) -> None:
    """Five job.log events published together on one partition: every one acknowledged (the consumer's
    ack floor reaches the last), by at most three acks; an ack per event sent five."""
    await start_dispatcher({"pose": local_route("noop")}, fold_partitions=1)
    stream = namespace.stream(JOBS)
    job = await create_job(jobs_kv, "acme")
    await wait_for(lambda: fold_settled(js, namespace, 1), timeout_s=30, what="the fold settled")
    await asyncio.sleep(FETCH_WAIT_S + 0.5)  # every ack of what came before sent
    acks: list[Msg] = []
    async with counting(nats_server.url) as counter:
        counter.observers.append(lambda msg: acks.append(msg) if msg.subject.startswith(f"$JS.ACK.{stream}.") else None)
        logs = [job_event("acme", job, EventType.JOB_LOG) for _ in range(EVENTS)]
        last = max(await asyncio.gather(*(publish(js, subjects, log) for log in logs)))  # stored together
        await wait_for(lambda: fold_settled(js, namespace, 1), timeout_s=30, what="the events folded and acked")
        await counter.settle()
    info = await js.consumer_info(stream, fold_durable(0))
    assert info.ack_floor.stream_seq == last
    assert info.num_ack_pending == 0
    assert 1 <= len(acks) <= 3, [msg.subject for msg in acks]


async def test_a_delivery_lost_on_the_way_is_not_acknowledged_by_a_later_ack(
    caplog: pytest.LogCaptureFixture,
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A partition holding its pin (a job.log folded and acked) whose inbox then drops the delivery of
    the job's job.queued (as a reconnect drops what the server sent meanwhile); a job.log follows. That
    job.log's ack must not acknowledge job.queued: it comes again after the ack wait (2 s here) and the
    record says queued. An AckAll ack sent over the gap acknowledged it unfolded: the record stayed
    created."""
    dropping: list[bool] = []
    dropped: list[str] = []
    on_msg = PinnedPull._on_msg

    async def lossy(self: PinnedPull, msg: Msg) -> None:
        if dropping and not dropped and event_token(msg.subject) == "queued":
            dropped.append(msg.subject)
            return
        await on_msg(self, msg)

    monkeypatch.setattr(PinnedPull, "_on_msg", lossy)
    await start_dispatcher({"pose": local_route("noop")}, fold_partitions=1, fold_linger_s=0.0)
    job = await create_job(jobs_kv, "acme")
    await publish(js, subjects, job_event("acme", job, EventType.JOB_LOG))
    await wait_for(lambda: fold_settled(js, namespace, 1), timeout_s=30, what="the first log folded and acked")
    dropping.append(True)
    await publish(js, subjects, job_event("acme", job, EventType.JOB_QUEUED, je.JobQueuedPayload()))
    await wait_for(lambda: bool(dropped), 30, what="job.queued dropped on its way")
    await publish(js, subjects, job_event("acme", job, EventType.JOB_LOG))
    record = await wait_record(jobs_kv, job, lambda r: r.status == "queued", 30)
    assert record.status == "queued"
    assert any("a delivery did not come here" in r.getMessage() for r in caplog.records)
