"""CORS per tenant through the stack: each tenant's origins (PUT /v1/cors) beside the global allowlist,
preflights answered for every tenant's origins until a token names the tenant, answers for its own."""

from __future__ import annotations

import httpx

from bench.harness.waiting import wait_for
from tests.support.app_api import AppStack, status_of

APP, GLOBEX, EVIL, GLOBAL = (
    "http://app.example:5173",
    "http://globex.example",
    "http://evil.example",
    "http://localhost:3000",
)


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": method,
        "access-control-request-headers": "authorization,content-type",
    }


async def _allowed(client: httpx.AsyncClient, origin: str) -> bool:
    response = await client.options("/v1/jobs", headers=preflight(origin))
    return response.headers.get("access-control-allow-origin") == origin


async def test_each_tenant_allows_its_own_origins(stack: AppStack) -> None:
    assert (await stack.api.put("/v1/cors", json={"origins": ["HTTP://App.Example:5173"]})).json() == {"origins": [APP]}
    assert (await stack.api.get("/v1/cors")).json() == {"origins": [APP]}
    _, globex_key = await stack.new_key("globex")
    async with stack.client(globex_key) as globex:
        assert (await globex.put("/v1/cors", json={"origins": [GLOBEX]})).status_code == 200
    async with stack.client(None) as anonymous:
        await wait_for(lambda: _allowed(anonymous, GLOBEX), timeout_s=5, what="the KV watch to bring globex's origins")
        assert await _allowed(anonymous, APP)
        assert await _allowed(anonymous, GLOBAL)
        refused = await anonymous.options("/v1/jobs", headers=preflight(EVIL))
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        token = await stack.mint(["jobs:read", "events:read"])
        named = await anonymous.options(f"/v1/events?token={token}", headers=preflight(GLOBEX, "GET"))
        assert named.status_code == 400  # the token names tenant dev: globex's origin is not its
        mine = await anonymous.options(f"/v1/events?token={token}", headers=preflight(APP, "GET"))
        assert (mine.status_code, mine.headers["access-control-allow-origin"]) == (200, APP)
    async with stack.client(token) as client:
        own = await client.get("/v1/jobs", headers={"origin": APP})
        assert own.headers["access-control-allow-origin"] == APP
        other = await client.get("/v1/jobs", headers={"origin": GLOBEX})
        assert other.status_code == 200
        assert "access-control-allow-origin" not in other.headers
        events = await status_of(client, "GET", f"/v1/events?token={token}", headers={"origin": APP})
        assert (events.status_code, events.headers["access-control-allow-origin"]) == (200, APP)
    bad = await stack.api.put("/v1/cors", json={"origins": ["https://app.example/path", "*"]})
    assert bad.status_code == 422
    assert (await stack.api.put("/v1/cors", json={"origins": []})).json() == {"origins": []}
    async with stack.client(None) as anonymous:
        await wait_for(lambda: _refused(anonymous, APP), timeout_s=5, what="the removal to reach the gateway")


async def _refused(client: httpx.AsyncClient, origin: str) -> bool:
    return not await _allowed(client, origin)
