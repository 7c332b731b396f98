"""Dead letters through the gateway (list, show, redrive) delivered again by the real notifier."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from standardwebhooks import Webhook

from bench.harness.receivers import Receiver
from bench.harness.secrets import SIGNING_SECRET
from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.subjects import Subjects
from services.notifier.webhooks.actions import publish_dead_letter
from services.notifier.webhooks.sender import AttemptResult
from services.notifier.webhooks.targets import job_webhook_secret
from tests.support.events import create_job, job_event, publish
from tests.support.gateway import Tenant
from tests.support.notifier import Notifier


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    """The gateway accepts loopback webhook URLs, as the notifier does in tests."""
    return {"webhook_allow_hosts": ["127.0.0.1"]}


async def endpoint(tenant: Tenant, url: str) -> dict[str, Any]:
    created = await tenant.http.post("/v1/webhooks", json={"url": url, "events": ["job.*"]})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def at_least(listed: Any, count: int) -> bool:
    return len(await listed()) >= count


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


async def test_dead_letters_page_show_and_redrive_with_their_webhook_id(
    notifier: Notifier,
    acme: Tenant,
    receiver: tuple[Receiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
) -> None:
    rx, base = receiver
    rx.default = 500
    hook = await endpoint(acme, f"{base}/flaky")
    path = f"/v1/webhooks/{hook['id']}/dead-letters"
    events = [job_event("acme", await create_job(jobs_kv, "acme"), EventType.JOB_LOG) for _ in range(3)]
    seqs = [await publish(js, subjects, event) for event in events]

    async def listed() -> list[dict[str, Any]]:
        response = await acme.http.get(path, params={"limit": 200})
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    await wait_for(lambda: at_least(listed, 3), what="three dead letters")
    first_page = (await acme.http.get(path, params={"limit": 2})).json()
    assert len(first_page["data"]) == 2
    assert first_page["next_after"] == first_page["data"][1]["id"]
    rest = (await acme.http.get(path, params={"limit": 2, "after": first_page["next_after"]})).json()
    assert len(rest["data"]) == 1
    assert rest["next_after"] is None
    letters = first_page["data"] + rest["data"]
    by_event = {letter["event_id"]: letter for letter in letters}
    assert set(by_event) == {e.id for e in events}
    assert {letter["source_seq"] for letter in letters} == set(seqs)
    assert all(letter["attempts"] == 4 and letter["last_status"] == 500 for letter in letters)
    one = await acme.http.get(f"{path}/{by_event[events[0].id]['id']}")
    assert one.status_code == 200
    assert one.json()["event"]["id"] == events[0].id

    rx.default = 200
    before = len(rx.on("/flaky"))
    chosen = by_event[events[0].id]["id"]
    redriven = await acme.http.post(f"{path}/redrive", json={"ids": [chosen, 999_999]})
    assert redriven.status_code == 200, redriven.text
    assert redriven.json() == {
        "redriven": [chosen], "not_found": [999_999], "refused": [], "remaining": 2, "endpoint_enabled": True
    }  # fmt: skip
    await wait_for(lambda: len(rx.on("/flaky")) > before, what="the redriven delivery")
    delivered = rx.on("/flaky")[before]
    assert delivered.webhook_id == events[0].id
    Webhook(hook["secret"]).verify(delivered.body, delivered.headers)

    rest_of_them = (await acme.http.post(f"{path}/redrive", json={"all": True})).json()
    assert sorted(rest_of_them["redriven"]) == sorted(by_event[e.id]["id"] for e in events[1:])
    assert rest_of_them["remaining"] == 0
    await wait_for(lambda: set(rx.ids("/flaky")[before:]) == {e.id for e in events}, what="every redriven event")
    assert await listed() == []
    again = (await acme.http.post(f"{path}/redrive", json={"ids": [chosen]})).json()
    assert again["redriven"] == []
    assert again["not_found"] == [chosen]


async def test_a_job_webhooks_dead_letter_without_a_sequence_is_found_and_redriven(
    notifier: Notifier, acme: Tenant, receiver: tuple[Receiver, str], js: JetStreamContext, subjects: Subjects
) -> None:
    rx, base = receiver
    upload = await acme.http.post("/v1/uploads", json={"filename": "a.mp4", "content_type": "video/mp4", "size": 10})
    spec = {"kind": "pose", "inputs": {"video": {"upload_id": upload.json()["id"]}}, "webhook": {"url": f"{base}/j"}}
    job = (await acme.http.post("/v1/jobs", json=spec)).json()
    await wait_for(lambda: rx.on("/j"), what="the job.created delivery")
    created_id = rx.ids("/j")[0]
    hook_id = f"jobhook-{job['id']}"
    await publish_dead_letter(
        js, subjects, tenant="acme", endpoint_id=hook_id, event_id=created_id, event_type="job.created",
        job_id=job["id"], attempts=9, result=AttemptResult(status=503),
    )  # fmt: skip
    listed = (await acme.http.get(f"/v1/webhooks/{hook_id}/dead-letters")).json()["data"]
    assert [(d["event_id"], d["source_seq"]) for d in listed] == [(created_id, None)]
    result = (await acme.http.post(f"/v1/webhooks/{hook_id}/dead-letters/redrive", json={"all": True})).json()
    assert result["redriven"] == [listed[0]["id"]]
    await wait_for(lambda: len(rx.on("/j")) == 2, what="the redriven job webhook")
    again = rx.on("/j")[1]
    assert again.webhook_id == created_id
    Webhook(job_webhook_secret(SIGNING_SECRET.encode(), "acme")).verify(again.body, again.headers)


async def test_dead_letters_are_the_tenants_own_and_bad_input_is_a_problem(
    notifier: Notifier, acme: Tenant, globex: Tenant, receiver: tuple[Receiver, str], js: JetStreamContext,
    subjects: Subjects,
) -> None:  # fmt: skip
    _, base = receiver
    mine, other = await endpoint(acme, f"{base}/a"), await endpoint(acme, f"{base}/b")
    await publish_dead_letter(
        js, subjects, tenant="acme", endpoint_id=other["id"], event_id="evt-x", event_type="job.log",
        job_id=None, attempts=1, result=AttemptResult(status=500),
    )  # fmt: skip
    path = f"/v1/webhooks/{mine['id']}/dead-letters"
    other_letter = (await acme.http.get(f"/v1/webhooks/{other['id']}/dead-letters")).json()["data"][0]["id"]
    assert_problem(await acme.http.get(f"{path}/{other_letter}"), 404)  # another endpoint's dead letter
    redrive = (await acme.http.post(f"{path}/redrive", json={"ids": [other_letter]})).json()
    assert redrive["not_found"] == [other_letter]
    assert redrive["redriven"] == []
    for response in (
        await globex.http.get(path),
        await globex.http.get(f"/v1/webhooks/{other['id']}/dead-letters/{other_letter}"),
        await globex.http.post(f"/v1/webhooks/{other['id']}/dead-letters/redrive", json={"all": True}),
        await acme.http.get("/v1/webhooks/whe_nope/dead-letters"),
        await acme.http.get("/v1/webhooks/jobhook-job_nope/dead-letters"),
    ):
        assert_problem(response, 404)
    for response in (
        await acme.http.get(path, params={"limit": 0}),
        await acme.http.get(path, params={"limit": 201}),
        await acme.http.get(path, params={"after": -1}),
        await acme.http.get(f"{path}/0"),
        await acme.http.post(f"{path}/redrive", json={}),
        await acme.http.post(f"{path}/redrive", json={"ids": []}),
        await acme.http.post(f"{path}/redrive", json={"ids": [1], "all": True}),
        await acme.http.post(f"{path}/redrive", json={"ids": list(range(1, 502))}),
        await acme.http.post(f"{path}/redrive", json={"ids": [0]}),
    ):
        assert_problem(response, 422)
    assert (await globex.http.get(f"/v1/webhooks/{other['id']}/dead-letters")).status_code == 404
    assert (await acme.http.get(f"/v1/webhooks/{other['id']}/dead-letters")).json()["data"][0]["event_id"] == "evt-x"
