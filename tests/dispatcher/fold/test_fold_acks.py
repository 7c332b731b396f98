"""A fold partition's acks (services/dispatcher/fold/acks.py): every folded event acked, one request per
quiet spell instead of one per batch (issue 34), the held ack sent before the pin is given up."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.message_counter import MessageCounter
from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.fold.acks import BatchAcks
from services.dispatcher.fold.partition import HOLD_S
from services.dispatcher.fold.partition_pulls import FETCH_WAIT_S
from services.dispatcher.fold.partitions import fold_settled
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import local_route
from tests.support.events import create_job, job_event, publish

EVENTS = 5
SPACING_S = HOLD_S / 2.5
"""Events this far apart are folded one batch each (a partition folds what has come at once), each
within the held ack's wait for more (:data:`HOLD_S`)."""


class Sent:
    """A stand-in for the connection: what was published and what was requested, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, bytes]] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.log.append(("publish", subject, data))

    async def request(self, subject: str, data: bytes, **_: object) -> None:
        self.log.append(("request", subject, data))


def _msg(n: int) -> Any:
    return Msg(_client=None, subject="e", reply=f"ack.{n}")  # type: ignore[arg-type]


async def test_acks_hold_the_last_for_one_request_and_a_nak_acks_it_first() -> None:
    sent = Sent()
    acks = BatchAcks(sent, 1.0)  # type: ignore[arg-type]
    await acks.ack([_msg(1)])
    await acks.ack([_msg(2), _msg(3)])
    assert sent.log == [("publish", "ack.1", b"+ACK"), ("publish", "ack.2", b"+ACK")]
    await acks.confirm()
    await acks.confirm()  # nothing held: nothing sent
    assert sent.log[2:] == [("request", "ack.3", b"+ACK")]
    await acks.ack([_msg(4)])
    await acks.nak([_msg(5), _msg(6)])
    assert sent.log[3:] == [("publish", "ack.4", b"+ACK"), ("publish", "ack.5", b"-NAK"), ("request", "ack.6", b"-NAK")]
    assert acks.held is None


async def test_spaced_events_are_each_acked_with_one_request_for_the_spell(
    caplog: pytest.LogCaptureFixture,
    start_dispatcher: StartDispatcher,
    nats_server: EmbeddedNats,
    nc: NatsClient,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
) -> None:
    """One partition, events a tenth of a second apart (a batch each): each is acked, and only one ack
    (the last's) is a request; the old fold sent one per batch (five). A loaded machine may space the
    publishes past the hold (each gap a quiet spell of its own, confirmed) or stall a confirm past its
    timeout (the next spell confirms again): each such is one request more, counted from what happened."""
    await start_dispatcher({"pose": local_route("noop")}, fold_partitions=1)
    stream = namespace.stream(JOBS)
    acks: list[Msg] = []
    counter = MessageCounter()
    counter.observers.append(lambda msg: acks.append(msg) if msg.subject.startswith(f"$JS.ACK.{stream}.") else None)
    await counter.start(nats_server.url)
    try:
        job = await create_job(jobs_kv, "acme")
        await wait_for(lambda: fold_settled(js, namespace, 1), timeout_s=30, what="the fold settled")
        await asyncio.sleep(FETCH_WAIT_S + 0.5)  # every ack of what came before sent
        await counter.settle()
        acks.clear()
        for _ in range(EVENTS):
            await publish(js, subjects, job_event("acme", job, EventType.JOB_LOG))
            await asyncio.sleep(SPACING_S)
        await wait_for(lambda: fold_settled(js, namespace, 1), timeout_s=30, what="the events folded and acked")
        await counter.settle()
    finally:
        await counter.stop()
    acked = {int(msg.subject.split(".")[-4]) for msg in acks}  # …{delivered}.{stream seq}.{delivery seq}.{time}.{left}
    assert len(acked) == EVENTS, [msg.subject for msg in acks]
    requests = sum(1 for msg in acks if msg.reply)  # one; two if a loaded machine folded one late
    stored = sorted({int(m.subject.split(".")[-4]): int(m.subject.split(".")[-2]) for m in acks}.values())
    spells = 1 + sum(1 for a, b in itertools.pairwise(stored) if (b - a) / 1e9 > HOLD_S)
    unconfirmed = sum("did not confirm the acks" in r.getMessage() for r in caplog.records)
    assert requests <= spells + 1 + unconfirmed, ([(m.subject, m.reply) for m in acks], spells, unconfirmed)
