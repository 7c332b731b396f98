"""The webhook fan-out outlives what JetStream does to it: its consumer deleted under it, its lease lost
and taken back while the consumer is gone. Each time it binds a consumer again, starting right after the
last event it acknowledged: an event stored while the consumer was gone and the next events reach the
endpoint (a real server, the notifier served over HTTP, a real receiver)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from bench.harness.receivers import Receiver
from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.notifier.webhooks.fanout import FANOUT_DURABLE
from services.notifier.webhooks.leases import BUCKET
from tests.support.events import create_endpoint, create_job, job_event, publish
from tests.support.notifier import Notifier, fanout_consumer_exists

pytestmark = pytest.mark.timeout(60)


Deliver = Callable[[str], Awaitable[None]]
"""Publish one event of a new job and wait until the endpoint got it (``what`` names the wait)."""


@pytest.fixture
async def deliver(
    notifier: Notifier,
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> Deliver:
    """An endpoint of tenant ``acme`` at the receiver's ``/hook``, already sent one event."""
    rx, base = receiver
    await create_endpoint(webhooks_kv, "acme", f"{base}/hook")

    async def deliver_one(what: str) -> None:
        event = job_event("acme", await create_job(jobs_kv, "acme"), EventType.JOB_SUCCEEDED)
        await publish(js, subjects, event)
        await wait_for(lambda: event.id in rx.ids("/hook"), 20, what)

    await deliver_one("the first event")
    return deliver_one


async def consumer_gone(js: JetStreamContext, namespace: Namespace) -> None:
    """Delete the fan-out's durable consumer, as an operator (or a lost stream replica) might."""
    await js.delete_consumer(namespace.stream(JOBS), FANOUT_DURABLE)


async def stored_while_gone(js: JetStreamContext, subjects: Subjects, jobs_kv: KeyValue, namespace: Namespace) -> str:
    """Publish an event of a new job while the fan-out has no consumer; its id."""
    event = job_event("acme", await create_job(jobs_kv, "acme"), EventType.JOB_SUCCEEDED)
    await publish(js, subjects, event)
    assert not await fanout_consumer_exists(js, namespace), "made again before the event was stored"
    return event.id


async def test_a_deleted_fanout_consumer_is_made_again_and_what_was_stored_meanwhile_is_delivered(
    deliver: Deliver, receiver: tuple[Receiver, str], js: JetStreamContext, subjects: Subjects, jobs_kv: KeyValue,
    namespace: Namespace,
) -> None:  # fmt: skip
    await consumer_gone(js, namespace)  # the fan-out binds again a second after its pull fails
    missed = await stored_while_gone(js, subjects, jobs_kv, namespace)
    await wait_for(lambda: fanout_consumer_exists(js, namespace), 20, "the fan-out's consumer made again")
    await wait_for(lambda: missed in receiver[0].ids("/hook"), 20, "the event stored while it was gone")
    await deliver("an event after the consumer came back")


async def take_over(leases: KeyValue) -> tuple[KeyValue.Entry, int]:
    """Write the fan-out lease as another replica would: the entry it replaced and the new revision. The
    holder renews it every half second, so a renewal between the read and the compare-and-set is read
    again (the write is refused, an answer, not a stall), at most 20 times."""
    for _ in range(20):
        held = await leases.get("fanout")
        assert held.revision is not None
        try:
            return held, await leases.update("fanout", b"another replica", last=held.revision)
        except KeyWrongLastSequenceError:
            continue
    raise AssertionError("the holder renewed before every one of 20 takeovers")


async def test_a_fanout_whose_lease_was_lost_while_its_consumer_went_starts_again_when_it_holds_it(
    deliver: Deliver, receiver: tuple[Receiver, str], js: JetStreamContext, subjects: Subjects, jobs_kv: KeyValue,
    namespace: Namespace,
) -> None:  # fmt: skip
    leases = await js.key_value(namespace.bucket(BUCKET))
    held, taken = await take_over(leases)  # the holder's next renew fails
    await consumer_gone(js, namespace)
    missed = await stored_while_gone(js, subjects, jobs_kv, namespace)
    await leases.delete("fanout", last=taken)  # the other replica lets go: the notifier takes the lease back
    await wait_for(lambda: fanout_consumer_exists(js, namespace), 20, "the fan-out's consumer made again")
    await wait_for(lambda: missed in receiver[0].ids("/hook"), 20, "the event stored while it was gone")
    await deliver("an event after the lease came back")
    assert (await leases.get("fanout")).value == held.value, "the notifier holds the fan-out lease again"
