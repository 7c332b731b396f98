"""The fan-out's held AckAll acks (:mod:`services.notifier.webhooks.fanout_acks`) on a real consumer.

One ack covers a run of handled events; it never covers an event this binding received and has not
handled, nor a pending one it never received (a dead holder's, or a delivery lost on the way); an
explicit-ack consumer (made before the change) is still acked per event. Acks are counted by a core
subscription on the consumer's ack subjects; what the server holds pending is read from its info.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, StreamConfig

from bench.harness.waiting import wait_for
from contracts.subjects import Namespace
from services.notifier.webhooks.fanout_acks import HeldAcks

pytestmark = pytest.mark.timeout(30)
ACK_WAIT_S = 1.0


@dataclass
class Consumer:
    """A stream of ``n`` events with one durable pull consumer, and the acks sent to it."""

    js: JetStreamContext
    stream: str
    psub: JetStreamContext.PullSubscription
    acks: list[Msg]

    async def take(self, n: int) -> list[Msg]:
        return await self.psub.fetch(n, timeout=5)

    async def held(self) -> HeldAcks:
        return HeldAcks(await self.psub.consumer_info(), self.psub.consumer_info, every_s=60.0)

    async def pending(self) -> tuple[int, int]:
        """The server's ack floor (stream sequence) and its count of pending messages."""
        info = await self.psub.consumer_info()
        assert info.ack_floor is not None
        return info.ack_floor.stream_seq, info.num_ack_pending or 0

    async def settles(self, expected: tuple[int, int], what: str) -> None:
        """Wait until :meth:`pending` is ``expected`` (an ack is a publish: the server takes it a moment later)."""

        async def reached() -> bool:
            return await self.pending() == expected

        await wait_for(reached, 5, what)


async def consumer(nc: NatsClient, js: JetStreamContext, ns: Namespace, policy: AckPolicy, n: int) -> Consumer:
    stream = f"{ns.name}_ACKS"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{ns.name}.acks.>"]))
    for i in range(n):
        await js.publish(f"{ns.name}.acks.e", str(i + 1).encode())
    acks: list[Msg] = []

    async def sent(msg: Msg) -> None:
        acks.append(msg)

    await nc.subscribe(f"$JS.ACK.{stream}.>", cb=sent)
    config = ConsumerConfig(ack_policy=policy, ack_wait=ACK_WAIT_S, max_ack_pending=512)
    psub = await js.pull_subscribe(f"{ns.name}.acks.>", durable="fanout", stream=stream, config=config)
    return Consumer(js, stream, psub, acks)


@pytest.fixture
async def ack_all(nc: NatsClient, js: JetStreamContext, namespace: Namespace) -> Consumer:
    """Six events, an AckAll consumer (as the fan-out's is made now)."""
    return await consumer(nc, js, namespace, AckPolicy.ALL, 6)


def seqs(msgs: list[Msg]) -> list[int]:
    return [m.metadata.sequence.stream for m in msgs]


async def test_a_run_of_handled_events_is_acked_by_one_ack_sent_at_stop(ack_all: Consumer, nc: NatsClient) -> None:
    held = await ack_all.held()
    msgs = await ack_all.take(6)
    held.received(msgs)
    await held.handled(msgs[:3])
    await held.handled(msgs[3:])
    await nc.flush()
    assert not ack_all.acks, "nothing acked before its time"
    await held.stop()
    await ack_all.settles((6, 0), "every event acked")
    assert len(ack_all.acks) == 1
    assert held.acked_through == 6


async def test_an_ack_never_covers_an_event_received_and_not_handled(ack_all: Consumer) -> None:
    held = await ack_all.held()
    msgs = await ack_all.take(6)
    held.received(msgs)
    await held.handled([m for m in msgs if m.metadata.sequence.stream != 3])  # 3 given back or in hand
    await held.flush()
    await ack_all.settles((2, 4), "1 and 2 acked, 3 to 6 pending")
    await msgs[2].nak()
    again = await ack_all.take(1)
    assert seqs(again) == [3]
    held.received(again)
    await held.handled(again)
    await held.flush()
    await ack_all.settles((6, 0), "every event acked once 3 is handled")


async def test_a_pending_event_of_a_dead_holder_is_not_covered_until_it_came_back(ack_all: Consumer) -> None:
    await ack_all.take(2)  # a holder that died with 1 and 2 in hand (never acked)
    held = await ack_all.held()  # the next holder binds: two pending it has not received
    newer = await ack_all.take(4)
    assert seqs(newer) == [3, 4, 5, 6]
    held.received(newer)
    await held.handled(newer)
    await held.flush()
    assert await ack_all.pending() == (0, 6), "3 to 6 not acked while 1 and 2 may be unhandled"
    back = await ack_all.take(2)  # redelivered after the ack wait
    back += await ack_all.take(1) if len(back) < 2 else []
    assert sorted(seqs(back)) == [1, 2]
    held.received(back)
    await held.handled(back)
    await held.flush()
    await ack_all.settles((6, 0), "every event acked")


async def test_a_delivery_lost_on_the_way_is_not_covered(ack_all: Consumer, js: JetStreamContext) -> None:
    held = await ack_all.held()
    first = await ack_all.take(2)
    lost = await ack_all.take(1)  # delivered, but never reaches this binding (a reconnect, a zombie)
    rest = await ack_all.take(3)
    held.received(first + rest)
    await held.handled(first + rest)
    await held.flush()
    assert await ack_all.pending() == (0, 6), "no ack over the gap in the delivery sequence"
    back: list[Msg] = []
    while len(back) < 6:  # after the ack wait, every one of them again (none was acked)
        back += await ack_all.take(6 - len(back))
    assert seqs(lost) == [3]
    assert sorted(seqs(back)) == [1, 2, 3, 4, 5, 6]
    held.received(back)
    await held.handled(back)
    await held.flush()
    await ack_all.settles((6, 0), "every event acked")


async def test_an_explicit_ack_consumer_made_before_is_acked_per_event(
    nc: NatsClient, js: JetStreamContext, namespace: Namespace
) -> None:
    explicit = await consumer(nc, js, namespace, AckPolicy.EXPLICIT, 3)
    held = await explicit.held()
    msgs = await explicit.take(3)
    held.received(msgs)
    await held.handled(msgs)
    await explicit.settles((3, 0), "each event acked at once")
    assert len(explicit.acks) == 3


async def test_an_event_redelivered_while_the_held_ack_is_sent_does_not_break_the_flush(ack_all: Consumer) -> None:
    """``received`` runs while ``flush`` awaits its ack (a redelivery came meanwhile, as at a lease lost
    under load): the flush ends cleanly; before, it raised KeyError on the entry ``received`` dropped,
    which killed the fan-out's ack timer with "Task exception was never retrieved"."""
    held = await ack_all.held()
    msgs = await ack_all.take(3)
    held.received(msgs)
    await held.handled(msgs)
    send_ack = msgs[-1].ack

    async def ack_meeting_a_redelivery() -> None:
        held.received([msgs[0]])  # the first event, delivered again before this ack went
        await send_ack()

    msgs[-1].ack = ack_meeting_a_redelivery  # type: ignore[method-assign]
    await held.flush()
    await ack_all.settles((3, 0), "the held ack covering all three")


async def test_a_delivery_received_while_the_consumer_is_asked_does_not_hide_a_dead_holders_event(
    ack_all: Consumer, nc: NatsClient
) -> None:
    """The count of pending messages this binding holds is taken before the consumer is asked: a delivery
    that came during the request, after the server counted, made the dead holder's pending event look
    like one of this binding's, and the AckAll ack covered it (lost, never fanned out)."""
    await ack_all.take(1)  # a holder that died with 1 in hand
    late: list[Msg] = []

    async def read_info_meeting_a_delivery() -> ConsumerInfo:
        info = await ack_all.psub.consumer_info()
        late.extend(await ack_all.take(1))  # the next event, delivered after the server's count
        held.received(late)
        return info

    held = HeldAcks(await ack_all.psub.consumer_info(), read_info_meeting_a_delivery, every_s=60.0)
    msgs = await ack_all.take(2)
    assert seqs(msgs) == [2, 3]
    held.received(msgs)
    await held.handled(msgs)
    await held.flush()
    assert seqs(late) == [4]
    await nc.flush()
    assert not ack_all.acks, "no ack over the dead holder's event 1"
    assert await ack_all.pending() == (0, 4)
