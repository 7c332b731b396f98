"""Deliveries queued outside the fan-out (a replay, a redrive): kicked, found at start, dead-lettered anew."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from standardwebhooks import Webhook

from bench.harness.receivers import Receiver
from bench.harness.waiting import wait_for
from contracts.envelope import EventEnvelope
from contracts.event_ids import dead_letter_msg_id, replay_msg_id, replay_of
from contracts.events.registry import EventType
from contracts.streams import Declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from services.common.webhook_queue import QueuedDelivery, enqueue, kick
from services.notifier.app import create_app
from tests.support.events import create_endpoint, create_job, job_event, publish, webhook_dead_letters
from tests.support.http import bound_socket, serve
from tests.support.notifier import Notifier, notifier_settings


async def queue_copy(
    js: JetStreamContext, subjects: Subjects, endpoint_id: str, event: EventEnvelope, seq: int
) -> None:
    """Queue a replayed copy of JOBS message ``seq`` (``event``) for the endpoint, as a replay does."""
    delivery = QueuedDelivery(
        "acme", endpoint_id, event.id, event.type, event.job_id, source_seq=seq, replay_of=replay_of("JOBS", seq)
    )
    await enqueue(js, subjects, delivery, event.to_json_bytes(), replay_msg_id("JOBS", seq, endpoint_id))


async def test_a_delivery_queued_outside_the_fanout_is_delivered_on_a_kick(
    notifier: Notifier,
    receiver: tuple[Receiver, str],
    nc: NatsClient,
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = receiver
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/kicked", events=["job.succeeded"])
    job_id = await create_job(jobs_kv, "acme")
    event = job_event("acme", job_id, EventType.JOB_LOG)  # the fan-out does not send it: not subscribed
    seq = await publish(js, subjects, event)
    await queue_copy(js, subjects, endpoint.id, event, seq)
    await kick(nc, subjects, "acme", endpoint.id)
    await wait_for(lambda: rx.on("/kicked"), what="the kicked delivery")
    captured = rx.on("/kicked")[0]
    assert captured.webhook_id == event.id
    Webhook(endpoint.secret).verify(captured.body, captured.headers)


async def test_a_queue_filled_while_no_notifier_ran_is_delivered_when_one_starts(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    declared: Declarations,
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = receiver
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/waiting")
    job_id = await create_job(jobs_kv, "acme")
    event = job_event("acme", job_id, EventType.JOB_LOG)
    await queue_copy(js, subjects, endpoint.id, event, 7)  # no consumer exists for this queue yet
    settings = notifier_settings(nats_server.url, namespace, tmp_path / "data")
    with serve(create_app(settings), bound_socket()):
        await wait_for(lambda: rx.on("/waiting"), what="the waiting delivery")
    assert rx.ids("/waiting") == [event.id]


async def test_dead_letters_keep_the_source_sequence_and_a_replayed_delivery_dies_on_its_own(
    notifier: Notifier,
    receiver: tuple[Receiver, str],
    nc: NatsClient,
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = receiver
    rx.default = 500
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/dying")
    job_id = await create_job(jobs_kv, "acme")
    event = job_event("acme", job_id, EventType.JOB_LOG)
    seq = await publish(js, subjects, event)

    async def letters(count: int) -> bool:
        return len(await webhook_dead_letters(js, subjects, "acme", endpoint.id)) >= count

    await wait_for(lambda: letters(1), what="the first dead letter")
    await queue_copy(js, subjects, endpoint.id, event, seq)
    await kick(nc, subjects, "acme", endpoint.id)
    await wait_for(lambda: letters(2), what="the replayed delivery's own dead letter")
    (first, first_headers), (second, second_headers) = await webhook_dead_letters(js, subjects, "acme", endpoint.id)
    assert first.source_seq == second.source_seq == seq
    assert first.event_id == second.event_id == event.id
    assert first_headers["Nats-Msg-Id"] == dead_letter_msg_id(event.id, endpoint.id)
    assert second_headers["Nats-Msg-Id"] == dead_letter_msg_id(event.id, endpoint.id, replay_of("JOBS", seq))
    assert set(rx.ids("/dying")) == {event.id}
