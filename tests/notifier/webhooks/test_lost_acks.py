"""Deliveries the endpoint got must not be sent again.

A delivery whose ack is lost on its way to the consumer's leader (a replica cut off from it, as in a
netfaults partition) comes back after the ack wait: the notifier that delivered it acks it again and
does not send it again. An attempt in flight when its delivery stops (the lease lost, as a lossy link
had one replica's renewals come too late) ends on its own and acks: it was cut short before, its message
came back after the ack wait and was sent again (24 duplicates in a netfaults run's lossy-link phase).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from bench.harness.receivers import Receiver
from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.streams import KV_NOTIFIER_LEASES, WEBHOOK_DELIVERIES
from contracts.subjects import Namespace, Subjects
from services.notifier.webhooks.delivery import consumer_name
from tests.support.events import create_endpoint, create_job, job_event, publish

pytestmark = pytest.mark.usefixtures("notifier")
ACK_WAIT_S = 1.0


class LostAcks:
    """``Msg.ack`` of the first ``count`` webhook deliveries goes nowhere (is not sent), as an ack from a
    replica cut off from the consumer's leader; every other ack is sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, stream: str, count: int) -> None:
        self.left, self.lost, self.lock = count, 0, threading.Lock()
        sent = Msg.ack

        async def ack(msg: Msg) -> None:
            with self.lock:
                lose = self.left > 0 and stream in (msg.reply or "")
                self.left -= int(lose)
                self.lost += int(lose)
            if not lose:
                await sent(msg)

        monkeypatch.setattr(Msg, "ack", ack)


@pytest.mark.parametrize("notifier_overrides", [{"webhook_ack_wait_s": ACK_WAIT_S}])
async def test_a_delivery_whose_ack_was_lost_is_acked_again_not_sent_again(
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    namespace: Namespace,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = namespace.stream(WEBHOOK_DELIVERIES)
    lost = LostAcks(monkeypatch, stream, 2)
    rx, base = receiver
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/hook")
    events = [job_event("acme", await create_job(jobs_kv, "acme"), EventType.JOB_LOG) for _ in range(3)]
    for event in events:
        await publish(js, subjects, event)
    await wait_for(lambda: rx.unique("/hook") >= len(events), timeout_s=30, what="every event delivered")

    async def settled() -> Any:  # the two whose acks were lost delivered again (consumer seqs 4 and 5) and acked
        info = await js.consumer_info(stream, consumer_name("acme", endpoint.id))
        return info if info.num_ack_pending == 0 and info.delivered.consumer_seq >= len(events) + 2 else None

    info = await wait_for(settled, timeout_s=30, what="the deliveries whose acks were lost, back", every_s=0.2)
    assert lost.lost == 2
    assert info.num_pending == 0
    assert sorted(rx.ids("/hook")) == sorted(e.id for e in events)  # each sent once


async def one_event_answer_held(
    receiver: tuple[Receiver, str], js: JetStreamContext, subjects: Subjects, jobs_kv: KeyValue, webhooks_kv: KeyValue
) -> tuple[str, str, threading.Event]:
    """An endpoint whose answers wait for the event returned, and one job event published to it, once its
    attempt is under way: (endpoint id, event id, the event that lets the answer go)."""
    rx, base = receiver
    rx.answer_after = answer = threading.Event()
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/hook")
    event = job_event("acme", await create_job(jobs_kv, "acme"), EventType.JOB_LOG)
    await publish(js, subjects, event)
    await wait_for(lambda: rx.unique("/hook") == 1, timeout_s=30, what="the attempt under way, its answer held")
    return endpoint.id, event.id, answer


async def until_acked(js: JetStreamContext, namespace: Namespace, endpoint_id: str) -> None:
    """Until the endpoint queue's consumer has its first message acked and nothing unacknowledged."""

    async def acked() -> bool:
        info = await js.consumer_info(namespace.stream(WEBHOOK_DELIVERIES), consumer_name("acme", endpoint_id))
        return info.num_ack_pending == 0 and (info.ack_floor.stream_seq or 0) >= 1

    await wait_for(acked, timeout_s=30, what="the delivery acked", every_s=0.1)


async def test_an_attempt_in_flight_when_its_lease_is_lost_ends_and_acks_and_is_not_made_again(
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    namespace: Namespace,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    endpoint_id, event_id, answer = await one_event_answer_held(receiver, js, subjects, jobs_kv, webhooks_kv)
    leases = await js.key_value(namespace.bucket(KV_NOTIFIER_LEASES))
    name = f"delivery.{consumer_name('acme', endpoint_id)}"
    taken = (await leases.get(name)).revision
    await leases.delete(name)  # the holder's next renewal finds it gone: the lease is lost, its work stops

    async def taken_again() -> bool:  # after the stop: the holder takes the lease anew
        try:
            return ((await leases.get(name)).revision or 0) > (taken or 0) + 1
        except KeyNotFoundError:
            return False

    await wait_for(taken_again, timeout_s=30, what="the lease lost and taken again", every_s=0.1)
    answer.set()
    await until_acked(js, namespace, endpoint_id)
    assert receiver[0].ids("/hook") == [event_id]  # once: the attempt ended and acked it


@pytest.mark.parametrize("notifier_overrides", [{"webhook_ack_wait_s": ACK_WAIT_S, "webhook_timeout_s": 10.0}])
async def test_an_attempt_slower_than_the_ack_wait_is_made_once(
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    namespace: Namespace,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    """The endpoint answers after three ack waits: the attempt's message is kept alive meanwhile, and a
    redelivery of it (a beat held up) is left to the attempt under way; it was attempted a second time at once."""
    endpoint_id, event_id, answer = await one_event_answer_held(receiver, js, subjects, jobs_kv, webhooks_kv)
    await asyncio.sleep(3 * ACK_WAIT_S)  # nothing to wait on: without the beats it was redelivered twice by now
    answer.set()
    await until_acked(js, namespace, endpoint_id)
    assert receiver[0].ids("/hook") == [event_id]
