"""The dashboard's credentials at the notifier: a feed token (``events:read``) opens the tenant's SSE feed,
a job's stream token only that job's; a page token (full access) is a bearer credential while its API key
lives."""

from __future__ import annotations

import httpx

from bench.harness.secrets import SIGNING_SECRET
from bench.harness.waiting import wait_for
from services.common.auth.apikeys import ApiKeyStore, Principal
from services.common.auth.scoped import Scope, feed_token, mint_api_token, page_token, stream_token
from tests.support.notifier import Notifier

SECRET = SIGNING_SECRET.encode()
JOB = "job_0000000000000000000000000"


async def status_of(http: httpx.AsyncClient, url: str, **kwargs: object) -> int:
    """The status of a GET, read without waiting for an SSE stream's end."""
    async with http.stream("GET", url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status_code


async def test_a_feed_token_opens_the_tenants_feed_only(
    notifier: Notifier, http: httpx.AsyncClient, keys: ApiKeyStore
) -> None:
    record, _ = await keys.create("acme")
    acme = Principal(tenant="acme", key_id=record.key_id)
    feed = feed_token(SECRET, acme, 60)
    assert await status_of(http, f"/v1/events?token={feed}") == 200
    expired = feed_token(SECRET, acme, -1)
    forged = feed_token(b"another secret", acme, 60)
    for token in (expired, forged, "x.y.z"):
        assert await status_of(http, f"/v1/events?token={token}") == 401, token
    assert await status_of(http, f"/v1/events?token={stream_token(SECRET, acme, JOB, 60)}") == 401
    subject = mint_api_token(SECRET, acme, 60, [Scope.EVENTS_READ], subject="user-1")
    assert await status_of(http, f"/v1/events?token={subject}") == 403
    no_scope = mint_api_token(SECRET, acme, 60, [Scope.JOBS_READ])
    response = await http.get(f"/v1/events?token={no_scope}")
    assert (response.status_code, response.json()["missing_scope"]) == (403, ["events:read"])
    assert await status_of(http, f"/v1/jobs/{JOB}/events?token={feed}") == 404  # no such job (a real reader)


async def test_a_page_token_is_a_bearer_credential_until_its_key_is_revoked(
    notifier: Notifier, http: httpx.AsyncClient, keys: ApiKeyStore
) -> None:
    record, _ = await keys.create("acme")
    token = page_token(SECRET, Principal(tenant="acme", key_id=record.key_id), 60)
    url = "/v1/webhooks/whe_none/deliveries"  # a valid credential gets 404 (no such endpoint), an invalid one 401
    headers = {"Authorization": f"Bearer {token}"}
    assert (await http.get(url, headers=headers)).status_code == 404
    stale = page_token(SECRET, Principal(tenant="acme", key_id=record.key_id), -1)
    other_tenant = page_token(SECRET, Principal(tenant="globex", key_id=record.key_id), 60)
    for bad in (stale, other_tenant):
        assert (await http.get(url, headers={"Authorization": f"Bearer {bad}"})).status_code == 401
    scoped = mint_api_token(SECRET, Principal(tenant="acme", key_id=record.key_id), 60, [Scope.EVENTS_READ])
    assert (await http.get(url, headers={"Authorization": f"Bearer {scoped}"})).status_code == 403
    assert await keys.revoke(record.key_id)

    async def refused() -> httpx.Response | None:  # once the key cache's KV watch hears it (milliseconds)
        response = await http.get(url, headers=headers)
        return response if response.status_code == 401 else None

    answer = await wait_for(refused, timeout_s=10, what="the revocation to refuse the page token")
    assert "revoked" in answer.json()["detail"]
