"""Delivery queues: nothing ages out, a full queue refuses (and dead-letters) new deliveries instead of
dropping old ones, per-job webhooks share one consumer per tenant, and only real attempts count."""

from __future__ import annotations

import json

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy
from nats.js.kv import KeyValue

from bench.harness.receivers import Captured, Receiver
from bench.harness.waiting import wait_for
from contracts.envelope import EventEnvelope
from contracts.events.registry import EventType
from contracts.events.webhooks import WebhookDeadLetteredPayload
from contracts.ids import tenant_key
from contracts.streams import WEBHOOK_DELIVERIES
from contracts.subjects import Namespace, Subjects
from services.common.auth.apikeys import ApiKeyStore
from services.notifier.webhooks.delivery import consumer_name
from services.notifier.webhooks.targets import job_hook_id
from tests.support.events import create_endpoint, create_job, job_event, job_spec, publish, read_endpoint
from tests.support.notifier import Notifier

pytestmark = pytest.mark.usefixtures("notifier")
SEQUENCE = (EventType.JOB_LOG, EventType.JOB_PROGRESS, EventType.JOB_SUCCEEDED)


class DeadLetters:
    """The ``webhook.dead_lettered`` events of one tenant, by event id."""

    def __init__(self) -> None:
        self.by_event: dict[str, WebhookDeadLetteredPayload] = {}

    async def watch(self, js: JetStreamContext, subjects: Subjects, tenant: str, endpoint_id: str) -> DeadLetters:
        async def on_msg(msg: object) -> None:
            payload = WebhookDeadLetteredPayload.model_validate(json.loads(msg.data)["data"])  # type: ignore[attr-defined]
            self.by_event[payload.event_id] = payload

        await js.subscribe(subjects.webhook_dead(tenant, endpoint_id), cb=on_msg, ordered_consumer=True)
        return self


FULL = {"webhook_queue_max_msgs": 3, "webhook_retry_schedule_s": [0.0] + [0.3] * 60}


@pytest.mark.parametrize("notifier_overrides", [FULL])
async def test_a_full_queue_refuses_new_deliveries_and_keeps_the_old_ones(
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    namespace: Namespace,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    config = (await js.stream_info(namespace.stream(WEBHOOK_DELIVERIES))).config
    assert not config.max_age  # nothing ages out: a message leaves when delivered or dead-lettered
    assert config.retention == RetentionPolicy.WORK_QUEUE
    assert (config.max_msgs_per_subject, config.discard, config.discard_new_per_subject) == (3, DiscardPolicy.NEW, True)

    rx, base = receiver
    failing = True
    rx.decide = lambda captured: 500 if failing else None
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/full")
    dead = await DeadLetters().watch(js, subjects, "acme", endpoint.id)
    job_id = await create_job(jobs_kv, "acme")
    events = [job_event("acme", job_id, EventType.JOB_LOG) for _ in range(5)]
    for event in events:
        await publish(js, subjects, event)
    await wait_for(lambda: len(dead.by_event) == 2, what="two refused deliveries dead-lettered")
    assert set(dead.by_event) == {events[3].id, events[4].id}
    for payload in dead.by_event.values():
        assert payload.attempts == 0
        assert "queue" in (payload.last_error or "")
    await wait_for(lambda: rx.ids("/full"), what="the first delivery attempted")  # the fan-out may be first
    assert len(set(rx.ids("/full"))) == 1  # only the first was attempted (its job's order holds the rest)

    failing = False
    await wait_for(lambda: events[2].id in rx.ids("/full"), what="the kept deliveries")
    delivered = list(dict.fromkeys(rx.ids("/full")))
    assert delivered == [e.id for e in events[:3]]  # the old ones were kept, in order


async def test_job_webhooks_share_one_consumer_per_tenant_and_keep_each_jobs_order(
    notifier: Notifier,
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    namespace: Namespace,
    jobs_kv: KeyValue,
    keys: ApiKeyStore,
) -> None:
    rx, base = receiver
    jobs = [await create_job(jobs_kv, "acme", job_spec({"url": f"{base}/job/{i}"})) for i in range(6)]
    published: dict[str, list[EventEnvelope]] = {job: [] for job in jobs}
    for event_type in SEQUENCE:
        for job in jobs:
            event = job_event("acme", job, event_type)
            published[job].append(event)
            await publish(js, subjects, event)
    await wait_for(lambda: sum(len(set(rx.ids(f"/job/{i}"))) for i in range(6)) == 18, what="every job's events")

    for i, job in enumerate(jobs):
        assert rx.ids(f"/job/{i}") == [e.id for e in published[job]]  # each job's order kept
    infos = await js.consumers_info(namespace.stream(WEBHOOK_DELIVERIES))
    assert len(infos) == 1  # one consumer for all of the tenant's job webhooks, not one per job
    assert not infos[0].config.inactive_threshold  # it lasts, and there is one per tenant
    _, key = await keys.create("acme")
    async with httpx.AsyncClient(base_url=notifier.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        listed = await http.get(f"/v1/webhooks/{job_hook_id(jobs[0])}/deliveries")
    assert listed.status_code == 200
    assert {d["event_id"] for d in listed.json()["data"]} == {e.id for e in published[jobs[0]]}


# A lease kept through a loaded machine's pauses (the tests' 1.5 s TTL ran out on a fresh clone's CI: the
# delivery stopped mid-attempt and its next holder made that attempt again, a fifth POST of four).
@pytest.mark.parametrize(
    "notifier_overrides", [{"webhook_retry_schedule_s": [0.0, 2.0, 0.2, 0.2], "webhook_lease_ttl_s": 15.0}]
)
async def test_deliveries_held_while_the_endpoint_is_disabled_keep_their_attempts(
    notifier: Notifier,
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    namespace: Namespace,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = receiver
    first_ok = False  # the first delivery fails until the endpoint is enabled again
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/held")
    job_id = await create_job(jobs_kv, "acme")
    first, second = job_event("acme", job_id, EventType.JOB_LOG), job_event("acme", job_id, EventType.JOB_SUCCEEDED)

    def decide(captured: Captured) -> int:
        return 200 if captured.webhook_id == first.id and first_ok else 500

    rx.decide = decide
    dead = await DeadLetters().watch(js, subjects, "acme", endpoint.id)
    await publish(js, subjects, first)
    await publish(js, subjects, second)
    stream, name = namespace.stream(WEBHOOK_DELIVERIES), consumer_name("acme", endpoint.id)

    async def both_fetched() -> bool:  # the first is retrying, the second held behind it in its lane
        if first.id not in rx.ids("/held"):
            return False
        info = await js.consumer_info(stream, name)
        return not info.num_pending and info.num_ack_pending == 2

    await wait_for(both_fetched, what="the second delivery held behind the first")
    record = await read_endpoint(webhooks_kv, "acme", endpoint.id)
    key = tenant_key("acme", endpoint.id)
    await webhooks_kv.put(key, record.model_copy(update={"enabled": False}).model_dump_json().encode())
    delivery = notifier.app.state.notifier.delivery
    await wait_for(lambda: ("acme", endpoint.id) not in delivery.running, what="the delivery stopped while disabled")
    first_ok = True
    await webhooks_kv.put(key, record.model_dump_json().encode())

    await wait_for(lambda: second.id in dead.by_event, what="the second delivery dead-lettered")
    assert rx.ids("/held").count(second.id) == 4  # every scheduled attempt was made
    assert dead.by_event[second.id].attempts == 4
    assert rx.ids("/held")[-1] == second.id
