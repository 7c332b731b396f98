"""Webhook endpoints over real HTTP and NATS: CRUD, the secret shown once, SSRF, globs, isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from standardwebhooks import Webhook

from contracts.api.webhooks import WebhookRecord
from contracts.ids import tenant_key
from contracts.streams import KV_WEBHOOKS
from contracts.subjects import Namespace
from tests.support.gateway import Tenant

PUBLIC_URL = "https://1.1.1.1/hooks"


async def create(tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = await tenant.http.post("/v1/webhooks", json={"url": PUBLIC_URL, **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def stored(js: JetStreamContext, namespace: Namespace, tenant: str, endpoint_id: str) -> WebhookRecord:
    kv = await js.key_value(namespace.bucket(KV_WEBHOOKS))
    entry = await kv.get(tenant_key(tenant, endpoint_id))
    assert entry.value is not None
    return WebhookRecord.model_validate_json(entry.value)


def assert_url_refused(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["body", "url"]


async def test_crud_round_trip(acme: Tenant, js: JetStreamContext, namespace: Namespace) -> None:
    created = await create(acme, events=["job.succeeded", "job.failed"], description="billing")
    endpoint_id = created["id"]
    assert endpoint_id.startswith("whe_")
    assert created["enabled"] is True
    assert created["events"] == ["job.succeeded", "job.failed"]
    assert (await stored(js, namespace, "acme", endpoint_id)).url == PUBLIC_URL

    listed = (await acme.http.get("/v1/webhooks")).json()["data"]
    assert [e["id"] for e in listed] == [endpoint_id]
    one = await acme.http.get(f"/v1/webhooks/{endpoint_id}")
    assert one.status_code == 200
    assert one.json()["description"] == "billing"

    off = await acme.http.patch(f"/v1/webhooks/{endpoint_id}", json={"enabled": False})
    assert off.status_code == 200
    assert (off.json()["enabled"], off.json()["disabled_reason"]) == (False, "disabled through the API")
    on = (await acme.http.patch(f"/v1/webhooks/{endpoint_id}", json={"enabled": True, "events": ["*"]})).json()
    assert (on["enabled"], on["disabled_reason"], on["events"]) == (True, None, ["*"])
    assert on["updated_at"] > created["updated_at"]
    assert (await acme.http.patch(f"/v1/webhooks/{endpoint_id}", json={})).status_code == 422

    assert (await acme.http.delete(f"/v1/webhooks/{endpoint_id}")).status_code == 204
    assert (await acme.http.get(f"/v1/webhooks/{endpoint_id}")).status_code == 404
    assert (await acme.http.delete(f"/v1/webhooks/{endpoint_id}")).status_code == 404
    assert (await acme.http.get("/v1/webhooks")).json() == {"data": []}


async def test_the_secret_is_shown_once_and_signs(acme: Tenant, js: JetStreamContext, namespace: Namespace) -> None:
    created = await create(acme)
    secret = created["secret"]
    assert secret.startswith("whsec_")
    for response in (
        await acme.http.get("/v1/webhooks"),
        await acme.http.get(f"/v1/webhooks/{created['id']}"),
    ):
        assert secret not in response.text
        items = response.json().get("data", [response.json()])
        assert all("secret" not in item for item in items)
    assert (await stored(js, namespace, "acme", created["id"])).secret == secret

    body, now = '{"type":"job.succeeded"}', datetime.now(UTC)
    signature = Webhook(secret).sign("evt_1", now, body)
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    assert Webhook(secret).verify(body, headers) == {"type": "job.succeeded"}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "http://10.0.0.1/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "https://localhost:8080/hook",
        "https://2130706433/",
        "https://user:pw@1.1.1.1/",
        "http://1.1.1.1/plain-http",
        "ftp://1.1.1.1/",
    ],
)
async def test_ssrf_refusals(acme: Tenant, url: str) -> None:
    assert_url_refused(await acme.http.post("/v1/webhooks", json={"url": url}))


async def test_a_name_resolving_to_loopback_is_named_in_the_reason(acme: Tenant) -> None:
    response = await acme.http.post("/v1/webhooks", json={"url": "https://localhost/hook"})
    assert_url_refused(response)
    assert "'localhost' resolves to" in response.json()["errors"][0]["msg"]


async def test_patch_checks_a_new_url(acme: Tenant, js: JetStreamContext, namespace: Namespace) -> None:
    created = await create(acme)
    assert_url_refused(await acme.http.patch(f"/v1/webhooks/{created['id']}", json={"url": "http://10.0.0.1/"}))
    assert (await stored(js, namespace, "acme", created["id"])).url == PUBLIC_URL
    moved = await acme.http.patch(f"/v1/webhooks/{created['id']}", json={"url": "https://8.8.8.8/in"})
    assert moved.json()["url"] == "https://8.8.8.8/in"


@pytest.mark.parametrize("gateway_overrides", [{"webhook_allow_hosts": ["127.0.0.1", "localhost"]}])
async def test_the_allowlist_opens_loopback(acme: Tenant) -> None:
    for url in ("http://127.0.0.1:9000/hook", "http://localhost:9000/hook", "http://[::ffff:127.0.0.1]/"):
        response = await acme.http.post("/v1/webhooks", json={"url": url})
        assert response.status_code == 201, (url, response.text)
    assert_url_refused(await acme.http.post("/v1/webhooks", json={"url": "http://10.0.0.1/"}))


@pytest.mark.parametrize("events", [["job.nope"], ["JOB.*"], ["job.[ab]*"], [], ["x" * 65], "job.*"])
async def test_event_globs_must_match_a_known_type(acme: Tenant, events: Any) -> None:
    response = await acme.http.post("/v1/webhooks", json={"url": PUBLIC_URL, "events": events})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"][:2] == ["body", "events"]


async def test_globs_are_kept_deduplicated(acme: Tenant) -> None:
    created = await create(acme, events=["job.*", "upload.completed", "job.*", "*"])
    assert created["events"] == ["job.*", "upload.completed", "*"]


async def test_another_tenants_endpoint_is_a_404(acme: Tenant, globex: Tenant) -> None:
    endpoint_id = (await create(acme))["id"]
    path = f"/v1/webhooks/{endpoint_id}"
    assert (await globex.http.get(path)).status_code == 404
    assert (await globex.http.patch(path, json={"enabled": False})).status_code == 404
    assert (await globex.http.post(f"{path}/rotate-secret")).status_code == 404
    assert (await globex.http.delete(path)).status_code == 404
    assert (await globex.http.get("/v1/webhooks")).json() == {"data": []}
    assert (await acme.http.get(path)).json()["enabled"] is True


async def test_rotate_secret_keeps_the_old_one_for_the_grace_period(
    acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    created = await create(acme)
    rotated = await acme.http.post(f"/v1/webhooks/{created['id']}/rotate-secret")
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["secret"].startswith("whsec_")
    assert new["secret"] != created["secret"]
    expires = datetime.fromisoformat(new["previous_secret_expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)
    record = await stored(js, namespace, "acme", created["id"])
    assert record.signing_secrets(datetime.now(UTC)) == [new["secret"], created["secret"]]
    assert record.signing_secrets(expires + timedelta(seconds=1)) == [new["secret"]]
    shown = (await acme.http.get(f"/v1/webhooks/{created['id']}")).text
    assert new["secret"] not in shown
    assert created["secret"] not in shown

    again = await acme.http.post(f"/v1/webhooks/{created['id']}/rotate-secret", json={"grace_period_s": 0})
    record = await stored(js, namespace, "acme", created["id"])
    assert (record.secret, record.previous_secret) == (again.json()["secret"], None)


async def test_auth_and_id_errors(acme: Tenant, anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/v1/webhooks")).status_code == 401
    assert (await anonymous.post("/v1/webhooks", json={"url": PUBLIC_URL})).status_code == 401
    assert (await acme.http.get("/v1/webhooks/whe_missing")).status_code == 404
    assert (await acme.http.get("/v1/webhooks/bad.id")).status_code == 422


@pytest.mark.parametrize("gateway_overrides", [{"webhook_max_endpoints": 2}])
async def test_endpoints_per_tenant_are_capped(acme: Tenant, globex: Tenant) -> None:
    await create(acme)
    await create(acme)
    assert (await acme.http.post("/v1/webhooks", json={"url": PUBLIC_URL})).status_code == 409
    await create(globex)
