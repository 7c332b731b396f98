"""Every tenant-scoped route, table-driven: another tenant's id is a 404, no key or a revoked key a 401.

Tenant ``acme`` creates one resource of each kind; tenant ``globex`` then tries every route on
acme's ids and must learn nothing (404, the same answer as for an id that never existed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.common.auth.apikeys import ApiKeyStore
from tests.support.gateway import Tenant

SAMPLE = {"joint_angles": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}


@dataclass(frozen=True)
class Ids:
    upload: str
    job: str
    webhook: str
    robot: str


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    body: dict[str, Any] | None = None


SCOPED = [
    Route("GET", "/v1/uploads/{upload}"),
    Route("POST", "/v1/uploads/{upload}/complete"),
    Route("GET", "/v1/jobs/{job}"),
    Route("POST", "/v1/jobs/{job}/cancel"),
    Route("GET", "/v1/robots/{robot}/joints/latest"),
    Route("GET", "/v1/webhooks/{webhook}"),
    Route("PATCH", "/v1/webhooks/{webhook}", {"enabled": False}),
    Route("POST", "/v1/webhooks/{webhook}/rotate-secret", {}),
    Route("DELETE", "/v1/webhooks/{webhook}"),
]

AUTHENTICATED = [
    *SCOPED,
    Route("GET", "/v1/jobs"),
    Route("POST", "/v1/jobs", {"kind": "pose", "inputs": {"video": {"upload_id": "upl_x"}}}),
    Route("GET", "/v1/webhooks"),
    Route("POST", "/v1/webhooks", {"url": "https://example.com/hook"}),
    Route("POST", "/v1/uploads", {"filename": "a.mp4", "content_type": "video/mp4", "size": 10}),
    Route("POST", "/v1/robots/{robot}/joints", SAMPLE),
]


@pytest.fixture
async def ids(acme: Tenant) -> Ids:
    upload = await acme.http.post("/v1/uploads", json={"filename": "lap.mp4", "content_type": "video/mp4", "size": 64})
    assert upload.status_code == 201, upload.text
    upload_id = upload.json()["id"]
    job = await acme.http.post("/v1/jobs", json={"kind": "pose", "inputs": {"video": {"upload_id": upload_id}}})
    assert job.status_code == 201, job.text
    hook = await acme.http.post("/v1/webhooks", json={"url": "https://93.184.216.34/hook", "events": ["job.*"]})
    assert hook.status_code == 201, hook.text
    joints = await acme.http.post("/v1/robots/arm1/joints", json=SAMPLE)
    assert joints.status_code == 202, joints.text
    return Ids(upload=upload_id, job=job.json()["id"], webhook=hook.json()["id"], robot="arm1")


async def _call(http: httpx.AsyncClient, route: Route, ids: Ids) -> httpx.Response:
    path = route.path.format(**ids.__dict__)
    return await http.request(route.method, path, json=route.body)


async def test_another_tenants_ids_are_404_on_every_route(acme: Tenant, globex: Tenant, ids: Ids) -> None:
    for route in SCOPED:
        response = await _call(globex.http, route, ids)
        assert response.status_code == 404, (route, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    # Lists never show another tenant's resources.
    assert (await globex.http.get("/v1/jobs")).json()["items"] == []
    assert (await globex.http.get("/v1/webhooks")).json()["data"] == []
    # ... and nothing globex did changed acme's resources.
    assert (await acme.http.get(f"/v1/webhooks/{ids.webhook}")).json()["enabled"] is True
    assert (await acme.http.get(f"/v1/jobs/{ids.job}")).json()["cancel_requested"] is False


async def test_no_key_or_a_revoked_key_is_401_everywhere(
    acme: Tenant, anonymous: httpx.AsyncClient, api_keys: ApiKeyStore, ids: Ids
) -> None:
    garbage = {"Authorization": "Bearer gr_0000000000000000_" + "A" * 43}
    for route in AUTHENTICATED:
        for headers in ({}, garbage):
            response = await anonymous.request(
                route.method, route.path.format(**ids.__dict__), json=route.body, headers=headers
            )
            assert response.status_code == 401, (route, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
    assert await api_keys.revoke(acme.key_id)
    # Revocation reaches each replica's key cache through a KV watch: milliseconds, not at once.
    deadline = asyncio.get_running_loop().time() + 5
    while (await acme.http.get("/v1/jobs")).status_code != 401:
        assert asyncio.get_running_loop().time() < deadline, "the revocation never took effect"
        await asyncio.sleep(0.01)
    for route in AUTHENTICATED:
        response = await _call(acme.http, route, ids)
        assert response.status_code == 401, (route, response.text)
