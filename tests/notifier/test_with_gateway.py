"""The notifier with the real gateway: endpoints made through /v1/webhooks, jobs made through /v1/jobs."""

from __future__ import annotations

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from standardwebhooks import Webhook

from bench.harness.receivers import Receiver
from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.subjects import Subjects
from tests.support.events import create_job, job_event, publish
from tests.support.gateway import Tenant
from tests.support.notifier import Notifier


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    """The gateway accepts loopback webhook URLs, as the notifier does in tests."""
    return {"webhook_allow_hosts": ["127.0.0.1"]}


async def test_an_endpoint_made_through_the_gateway_gets_signed_events_until_deleted(
    notifier: Notifier,
    acme: Tenant,
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
) -> None:
    rx, base = receiver
    created = await acme.http.post("/v1/webhooks", json={"url": f"{base}/gw", "events": ["job.*"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    job_id = await create_job(jobs_kv, "acme")
    event = job_event("acme", job_id, EventType.JOB_LOG)
    await publish(js, subjects, event)
    await wait_for(lambda: rx.on("/gw"), what="a delivery")
    captured = rx.on("/gw")[0]
    Webhook(endpoint["secret"]).verify(captured.body, captured.headers)

    headers = {"Authorization": f"Bearer {acme.key}"}
    async with httpx.AsyncClient(base_url=notifier.url, headers=headers, timeout=30) as http:
        listed = await http.get(f"/v1/webhooks/{endpoint['id']}/deliveries")
        assert listed.status_code == 200
        assert [d["event_id"] for d in listed.json()["data"]] == [event.id]
    assert (await acme.http.delete(f"/v1/webhooks/{endpoint['id']}")).status_code == 204
    other = await acme.http.post("/v1/webhooks", json={"url": f"{base}/other"})
    assert other.status_code == 201
    follow = job_event("acme", job_id, EventType.JOB_SUCCEEDED)
    await publish(js, subjects, follow)
    await wait_for(lambda: follow.id in rx.ids("/other"), what="the event at the remaining endpoint")
    assert follow.id not in rx.ids("/gw")  # the deleted endpoint gets nothing more


async def test_a_job_submitted_through_the_gateway_streams_with_its_token(
    notifier: Notifier, acme: Tenant, js: JetStreamContext, subjects: Subjects
) -> None:
    upload = await acme.http.post("/v1/uploads", json={"filename": "a.mp4", "content_type": "video/mp4", "size": 10})
    assert upload.status_code == 201, upload.text
    body = {"kind": "pose", "inputs": {"video": {"upload_id": upload.json()["id"]}}}
    job = await acme.http.post("/v1/jobs", json=body)
    assert job.status_code in (200, 201, 202), job.text
    events_url = job.json()["urls"]["events"]
    path_and_query = events_url.split("/v1/", 1)[1]
    async with (
        httpx.AsyncClient(base_url=notifier.url, timeout=30) as anonymous,
        anonymous.stream("GET", f"/v1/{path_and_query}") as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                assert line == "event: job.created"
                break
