"""Webhooks end to end: a real nats-server, the notifier over HTTP, real receivers on loopback."""

from __future__ import annotations

import json

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bench.harness.receivers import Captured, Receiver
from bench.harness.secrets import SIGNING_SECRET
from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.events.webhooks import WebhookDeadLetteredPayload
from contracts.subjects import Subjects
from services.common.auth.apikeys import ApiKeyStore
from services.notifier.webhooks.targets import job_hook_id, job_webhook_secret
from tests.support.events import create_endpoint, create_job, job_event, job_spec, publish, read_endpoint
from tests.support.http import bound_socket
from tests.support.notifier import Notifier

pytestmark = pytest.mark.usefixtures("notifier")


async def test_signed_deliveries_verify_and_a_tampered_body_does_not(
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = receiver
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/hook")
    ignored = await create_endpoint(webhooks_kv, "acme", f"{base}/only-success", events=["job.succeeded"])
    job_id = await create_job(jobs_kv, "acme")
    events = [job_event("acme", job_id, t) for t in (EventType.JOB_LOG, EventType.JOB_PROGRESS)]
    for event in events:
        await publish(js, subjects, event)

    await wait_for(lambda: len(rx.on("/hook")) == 2, what="two deliveries")
    verifier = Webhook(endpoint.secret)
    for captured, event in zip(rx.on("/hook"), events, strict=True):
        assert captured.webhook_id == event.id
        assert captured.headers["content-type"] == "application/json"
        assert verifier.verify(captured.body, captured.headers) == json.loads(event.to_json_bytes())
        tampered = captured.body.replace(b'"acme"', b'"evil"')
        with pytest.raises(WebhookVerificationError):
            verifier.verify(tampered, captured.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(ignored.secret).verify(rx.on("/hook")[0].body, rx.on("/hook")[0].headers)
    assert rx.on("/only-success") == []


async def test_retries_keep_the_webhook_id_and_stop_after_success(
    notifier: Notifier,
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
    keys: ApiKeyStore,
) -> None:
    rx, base = receiver
    rx.script = [500, 500, 500, 200]
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/flaky")
    job_id = await create_job(jobs_kv, "acme")
    first = job_event("acme", job_id, EventType.JOB_LOG)
    await publish(js, subjects, first)
    await wait_for(lambda: len(rx.on("/flaky")) == 4, what="four attempts")
    second = job_event("acme", job_id, EventType.JOB_SUCCEEDED)
    await publish(js, subjects, second)
    await wait_for(lambda: second.id in rx.ids("/flaky"), what="the next event")

    assert rx.ids("/flaky") == [first.id] * 4 + [second.id]  # delivered once more after success, in order
    _, key = await keys.create("acme")
    async with httpx.AsyncClient(base_url=notifier.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        response = await http.get(f"/v1/webhooks/{endpoint.id}/deliveries")
        assert response.status_code == 200
        by_id = {d["event_id"]: d for d in response.json()["data"]}
        assert by_id[first.id]["attempts"] == 4
        assert by_id[first.id]["status"] == "delivered"
        assert by_id[first.id]["last_status_code"] == 200
        _, other = await keys.create("globex")
        missing = await http.get(f"/v1/webhooks/{endpoint.id}/deliveries", headers={"Authorization": f"Bearer {other}"})
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("notifier_overrides", [{"webhook_retry_schedule_s": [0.0] + [0.2] * 40}])
async def test_a_retrying_job_holds_back_only_its_own_later_events(
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = receiver
    await create_endpoint(webhooks_kv, "acme", f"{base}/lanes")
    job_a, job_b = await create_job(jobs_kv, "acme"), await create_job(jobs_kv, "acme")
    types = (EventType.JOB_LOG, EventType.JOB_PROGRESS, EventType.JOB_SUCCEEDED)
    a_events = [job_event("acme", job_a, t) for t in types]
    b_events = [job_event("acme", job_b, t) for t in types]
    b_ids = {e.id for e in b_events}

    def decide(captured: Captured) -> int | None:
        # A's first event fails until every B event has arrived, then succeeds.
        if captured.webhook_id == a_events[0].id and not b_ids <= set(rx.seen.get("/lanes", ())):
            return 500
        return None

    rx.decide = decide
    for event in a_events:
        await publish(js, subjects, event)
    await wait_for(lambda: a_events[0].id in rx.ids("/lanes"), what="A's first attempt")
    for event in b_events:
        await publish(js, subjects, event)
    await wait_for(lambda: a_events[-1].id in rx.ids("/lanes"), what="A's last event")

    ids = rx.ids("/lanes")
    a_ids = [e.id for e in a_events]
    first_a1_success = max(i for i, x in enumerate(ids) if x == a_ids[0])
    assert ids.count(a_ids[0]) >= 2  # A's first event was retried
    assert all(x == a_ids[0] for x in ids[:first_a1_success] if x in a_ids)  # nothing of A passed it
    # B's events all arrived while A was retrying, in their order
    assert [x for x in ids[:first_a1_success] if x in b_ids] == [e.id for e in b_events]
    # then A's events in order, each once more after A1's success, with stable webhook ids
    assert [x for x in ids[first_a1_success:] if x in a_ids] == a_ids
    assert sorted(ids) == sorted([a_ids[0]] * ids.count(a_ids[0]) + a_ids[1:] + [e.id for e in b_events])


async def test_retry_state_is_visible_while_retrying(
    notifier: Notifier,
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
    keys: ApiKeyStore,
) -> None:
    rx, base = receiver
    rx.script = [(429, {"Retry-After": "30"})]
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/busy")
    job_id = await create_job(jobs_kv, "acme")
    event = job_event("acme", job_id, EventType.JOB_LOG)
    await publish(js, subjects, event)
    _, key = await keys.create("acme")
    async with httpx.AsyncClient(base_url=notifier.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:

        async def retrying() -> dict[str, object] | None:
            data = (await http.get(f"/v1/webhooks/{endpoint.id}/deliveries")).json()["data"]
            return data[0] if data and data[0]["status"] == "retrying" else None

        state = await wait_for(retrying, what="a retrying delivery")
    assert state["last_status_code"] == 429
    assert state["next_attempt_at"] is not None  # Retry-After: 30 s, not the 0.2 s schedule
    assert len(rx.on("/busy")) == 1


@pytest.mark.parametrize("notifier_overrides", [{"webhook_disable_after_exhausted": 1}])
async def test_a_receiver_down_for_the_whole_schedule_yields_a_dead_letter(
    js: JetStreamContext, subjects: Subjects, jobs_kv: KeyValue, webhooks_kv: KeyValue
) -> None:
    sock = bound_socket()
    down = f"http://127.0.0.1:{sock.getsockname()[1]}/down"
    sock.close()  # nothing listens there
    endpoint = await create_endpoint(webhooks_kv, "acme", down)
    job_id = await create_job(jobs_kv, "acme")
    event = job_event("acme", job_id, EventType.JOB_LOG)
    await publish(js, subjects, event)

    sub = await js.subscribe(subjects.webhook_dead("acme", endpoint.id), ordered_consumer=True)
    msg = await sub.next_msg(timeout=15)
    dead = json.loads(msg.data)
    assert dead["type"] == EventType.WEBHOOK_DEAD_LETTERED
    payload = WebhookDeadLetteredPayload.model_validate(dead["data"])
    assert (payload.event_id, payload.attempts, payload.last_status) == (event.id, 4, None)
    assert payload.last_error is not None
    assert "Connect" in payload.last_error
    record = await wait_for(lambda: _disabled(webhooks_kv, "acme", endpoint.id), what="the endpoint auto-disabled")
    assert "exhausted" in (record.disabled_reason or "")
    await sub.unsubscribe()


async def _disabled(webhooks: KeyValue, tenant: str, endpoint_id: str) -> object:
    record = await read_endpoint(webhooks, tenant, endpoint_id)
    return record if not record.enabled else None


async def test_410_disables_the_endpoint(
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = receiver
    rx.script = [410]
    endpoint = await create_endpoint(webhooks_kv, "acme", f"{base}/gone")
    job_id = await create_job(jobs_kv, "acme")
    for _ in range(3):
        await publish(js, subjects, job_event("acme", job_id, EventType.JOB_LOG))
    record = await wait_for(lambda: _disabled(webhooks_kv, "acme", endpoint.id), what="the endpoint disabled")
    assert "410" in (record.disabled_reason or "")
    assert len(rx.on("/gone")) == 1  # nothing more is sent to a disabled endpoint


async def test_a_job_webhook_from_the_spec_is_signed_with_the_tenant_job_secret(
    receiver: tuple[Receiver, str], js: JetStreamContext, subjects: Subjects, jobs_kv: KeyValue
) -> None:
    rx, base = receiver
    spec = job_spec({"url": f"{base}/job", "events": ["job.succeeded"]})
    job_id = await create_job(jobs_kv, "acme", spec)
    log, done = (
        job_event("acme", job_id, EventType.JOB_LOG),
        job_event("acme", job_id, EventType.JOB_SUCCEEDED),
    )
    await publish(js, subjects, log)
    await publish(js, subjects, done)
    await wait_for(lambda: rx.on("/job"), what="the job's webhook")
    captured = rx.on("/job")[0]
    assert captured.webhook_id == done.id
    secret = job_webhook_secret(SIGNING_SECRET.encode(), "acme")
    Webhook(secret).verify(captured.body, captured.headers)
    assert job_hook_id(job_id).startswith("jobhook-")
