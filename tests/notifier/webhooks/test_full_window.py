"""An endpoint queue's delivery keeps running: a window of retries, a pull that NATS refuses.

An endpoint that is down fails the first attempt of every job's event; each is NAKed with its retry
delay and stays unacknowledged. Once ``webhook_max_ack_pending`` of them wait so (more jobs than the
window), the delivery starts no fetch for new messages, and with no attempt in flight it had nothing
to wait on: ``asyncio.wait`` of nothing raised, the delivery died ("webhook delivery failed") and was
started again each second, reading its consumer's ack-pending range anew each time, for as long as
the endpoint stayed down. The retries come back through a fetch of one (a redelivery is sent at the
window's limit), so the delivery waits on that.

A pull that JetStream answers with a 503 (no consumer took it: a stream leader away, a consumer
deleted) ends the delivery's run, and its next binds the consumer again: a warning, not an error
with a traceback, as for any other call that finds NATS away.
"""

from __future__ import annotations

import logging

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.receivers import Captured, Receiver
from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.streams import WEBHOOK_DELIVERIES
from contracts.subjects import Namespace, Subjects
from services.notifier.webhooks.delivery import consumer_name
from tests.support.events import create_endpoint, create_job, job_event, publish

pytestmark = pytest.mark.usefixtures("notifier")
WINDOW, JOBS = 4, 6
DOWN_THEN_UP = {"webhook_max_ack_pending": WINDOW, "webhook_retry_schedule_s": [0.0, 0.5, 0.5, 0.5, 0.5, 0.5]}


def first_attempt_fails(receiver: Receiver) -> None:
    """Each event's first request is answered 500, every later one 200 (an endpoint down for a moment)."""
    tried: set[str] = set()

    def decide(captured: Captured) -> int:
        first = captured.webhook_id not in tried
        tried.add(captured.webhook_id)
        return 500 if first else 200

    receiver.decide = decide


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The messages logged at ERROR or above (a delivery that died is one)."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("notifier_overrides", [DOWN_THEN_UP])
async def test_a_window_of_deliveries_all_waiting_for_retries_keeps_its_delivery_running(
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="services.notifier")
    rx, base = receiver
    first_attempt_fails(rx)
    await create_endpoint(webhooks_kv, "acme", f"{base}/hook")
    sent = []
    for _ in range(JOBS):  # more jobs than the window: its first WINDOW all wait for their retry at once
        event = job_event("acme", await create_job(jobs_kv, "acme"), EventType.JOB_LOG)
        await publish(js, subjects, event)
        sent.append(event.id)
    await wait_for(lambda: len(rx.accepted_on("/hook")) >= JOBS, timeout_s=30, what="every event delivered")
    assert sorted(c.webhook_id for c in rx.accepted_on("/hook")) == sorted(sent)
    assert len(rx.on("/hook")) == 2 * JOBS  # one refused attempt and one accepted each, none made again
    assert errors_logged(caplog) == []  # the delivery never died and started again


@pytest.mark.parametrize("notifier_overrides", [{"webhook_lease_ttl_s": 15.0}])  # a stalled server: lease kept
async def test_a_delivery_whose_consumer_is_gone_is_bound_again_with_a_warning(
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    namespace: Namespace,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="services.notifier")
    rx, base = receiver
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/hook")
    job = await create_job(jobs_kv, "acme")
    first, second = (job_event("acme", job, EventType.JOB_LOG) for _ in range(2))
    await publish(js, subjects, first)
    await wait_for(lambda: rx.unique("/hook") >= 1, what="the first delivery")
    await js.delete_consumer(namespace.stream(WEBHOOK_DELIVERIES), consumer_name("acme", endpoint.id))
    await publish(js, subjects, second)
    await wait_for(lambda: rx.unique("/hook") >= 2, timeout_s=30, what="the second, once the consumer is back")
    # first once: deleted before its ack landed, the consumer made again delivers it anew, and the
    # notifier that delivered it acks it, not sends it again (DeliveredMemory; 1 run in 6 under load before)
    assert [c.webhook_id for c in rx.accepted_on("/hook")] == [first.id, second.id]
    assert errors_logged(caplog) == []  # NATS refusing the pull (no consumer answers: a 503) is a warning, no traceback
    assert any("NATS away" in r.getMessage() for r in caplog.records)
