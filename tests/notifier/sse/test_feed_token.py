"""The dashboard's credentials at the notifier: a feed token opens the tenant's SSE feed and nothing
else; a dashboard token is a bearer credential while its API key lives."""

from __future__ import annotations

import httpx

from bench.harness.secrets import SIGNING_SECRET
from services.common.auth.apikeys import ApiKeyStore, Principal
from services.common.auth.key_cache import dashboard_token
from services.common.auth.tokens import mint_token
from tests.support.notifier import Notifier

SECRET = SIGNING_SECRET.encode()


async def status_of(http: httpx.AsyncClient, url: str, **kwargs: object) -> int:
    """The status of a GET, read without waiting for an SSE stream's end."""
    async with http.stream("GET", url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status_code


async def test_a_feed_token_opens_the_tenants_feed_only(notifier: Notifier, http: httpx.AsyncClient) -> None:
    feed = mint_token(SECRET, "stream", 60, tenant="acme", scope="tenant")
    assert await status_of(http, f"/v1/events?token={feed}") == 200
    job_token = mint_token(SECRET, "stream", 60, tenant="acme", job="job_0000000000000000000000000")
    expired = mint_token(SECRET, "stream", -1, tenant="acme", scope="tenant")
    forged = mint_token(b"another secret", "stream", 60, tenant="acme", scope="tenant")
    for token in (job_token, expired, forged, "v1.x.y"):
        assert await status_of(http, f"/v1/events?token={token}") == 401, token
    assert await status_of(http, f"/v1/jobs/job_0000000000000000000000000/events?token={feed}") == 401


async def test_a_dashboard_token_is_a_bearer_credential_until_its_key_is_revoked(
    notifier: Notifier, http: httpx.AsyncClient, keys: ApiKeyStore
) -> None:
    record, _ = await keys.create("acme")
    token = dashboard_token(SECRET, Principal(tenant="acme", key_id=record.key_id), 60)
    url = "/v1/webhooks/whe_none/deliveries"  # a valid credential gets 404 (no such endpoint), an invalid one 401
    headers = {"Authorization": f"Bearer {token}"}
    assert (await http.get(url, headers=headers)).status_code == 404
    assert await status_of(http, f"/v1/events?token={token}") == 401  # not a feed token
    stale = dashboard_token(SECRET, Principal(tenant="acme", key_id=record.key_id), -1)
    other_tenant = dashboard_token(SECRET, Principal(tenant="globex", key_id=record.key_id), 60)
    for bad in (stale, other_tenant):
        assert (await http.get(url, headers={"Authorization": f"Bearer {bad}"})).status_code == 401
    assert await keys.revoke(record.key_id)
    assert (await http.get(url, headers=headers)).status_code == 401
