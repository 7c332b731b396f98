"""CORS allowlist, body size limit and problem+json for unknown routes, over real HTTP."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from services.gateway.settings import GatewaySettings
from services.notifier.settings import NotifierSettings
from tests.support.gateway import Gateway, Tenant


async def test_cors_allows_only_listed_origins(gateway: Gateway, anonymous: httpx.AsyncClient) -> None:
    allowed = gateway.settings.cors_origins[0]
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ok = await anonymous.options("/v1/jobs", headers={"Origin": allowed, **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == allowed
    refused = await anonymous.options("/v1/jobs", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize("settings_class", [GatewaySettings, NotifierSettings])
def test_wildcard_cors_is_refused_outside_dev(settings_class: type[GatewaySettings | NotifierSettings]) -> None:
    with pytest.raises(ValidationError, match="CORS"):
        settings_class(profile="test", cors_origins=["*"])
    assert settings_class(profile="dev", cors_origins=["*"]).cors_origins == ["*"]


async def test_oversized_body_is_413_problem(gateway: Gateway, acme: Tenant) -> None:
    too_big = b"{" + b" " * (gateway.settings.max_body_bytes + 1) + b"}"
    response = await acme.http.post("/v1/jobs", content=too_big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_unknown_route_is_a_problem_document(acme: Tenant) -> None:
    response = await acme.http.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404
