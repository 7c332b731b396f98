"""POST /v1/tokens and the life of a token through the stack: its answer, its limits, expiry, the death of
its API key, a token that tries to mint, kinds and robot_id narrowing, per-subject quotas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.harness.waiting import wait_for
from contracts.job_parts import JobStatus
from contracts.quotas import subject_usage_key
from contracts.streams import KV_QUOTAS, KV_TENANT_USAGE
from services.cli.dev import DEV_TENANT
from services.common.auth.apikeys import ApiKeyStore
from tests.support.app_api import AppStack, lap_spec, record_when, small_video, upload_file


async def test_a_minted_token_says_what_it_may_do(stack: AppStack) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    body = {"scopes": ["jobs:write", "jobs:read"], "kinds": ["lap_compare"], "subject": "user-1", "ttl_s": 120}
    response = await stack.api.post("/v1/tokens", json=body)
    assert response.status_code == 201, response.text
    minted = response.json()
    assert (minted["scopes"], minted["kinds"], minted["subject"]) == (body["scopes"], ["lap_compare"], "user-1")
    expires = datetime.fromisoformat(minted["expires_at"])
    assert before + timedelta(seconds=120) <= expires <= datetime.now(UTC) + timedelta(seconds=120)
    default = (await stack.api.post("/v1/tokens", json={"scopes": ["jobs:read"]})).json()
    default_expires = datetime.fromisoformat(default["expires_at"])
    assert before + timedelta(seconds=900) <= default_expires <= datetime.now(UTC) + timedelta(seconds=900)


async def test_a_token_request_outside_the_limits_is_a_422(stack: AppStack) -> None:
    for body, where in [
        ({"scopes": ["jobs:read"], "ttl_s": 3601}, ["body", "ttl_s"]),
        ({"scopes": ["tokens:write"]}, ["body", "scopes", 0]),
        ({"scopes": []}, ["body", "scopes"]),
        ({"scopes": ["jobs:read"], "kinds": ["pose"]}, ["body", "kinds"]),
        ({"scopes": ["jobs:read"], "robot_id": "arm-1"}, ["body", "robot_id"]),
        ({"scopes": ["jobs:read"], "subject": "has space"}, ["body", "subject"]),
    ]:
        response = await stack.api.post("/v1/tokens", json=body)
        assert response.status_code == 422, (body, response.text)
        assert [e["loc"] for e in response.json()["errors"]] == [where], body


async def test_a_token_cannot_mint_a_token(stack: AppStack) -> None:
    for scopes in (["jobs:read"], ["jobs:write", "uploads:write", "events:read"]):
        async with stack.client(await stack.mint(scopes)) as client:
            response = await client.post("/v1/tokens", json={"scopes": ["jobs:read"]})
        assert response.status_code == 403
        assert "cannot mint" in response.json()["detail"]


async def test_an_expired_or_forged_token_is_a_401_saying_why(stack: AppStack) -> None:
    token = await stack.mint(["jobs:read"], ttl_s=1)
    async with stack.client(token) as client:
        refused = await wait_for(
            lambda: _refused(client, "/v1/jobs"), timeout_s=10, what="the one-second token to expire"
        )
    assert "expired" in refused["detail"]
    header, claims, signature = (await stack.mint(["jobs:read"])).split(".")
    for bad in (f"{header}.{claims}.{signature[:-3]}xyz", "a.b.c", f"{header}.{claims}."):
        async with stack.client(bad) as client:
            response = await client.get("/v1/jobs")
        assert response.status_code == 401, bad
        assert response.headers["www-authenticate"] == "Bearer"


async def _refused(client: httpx.AsyncClient, url: str) -> dict[str, str] | None:
    response = await client.get(url)
    return response.json() if response.status_code == 401 else None


async def test_revoking_the_key_refuses_its_tokens(stack: AppStack) -> None:
    key_id, key = await stack.new_key(DEV_TENANT)
    async with stack.client(key) as owner:
        token = (await owner.post("/v1/tokens", json={"scopes": ["jobs:read", "events:read"]})).json()["token"]
    async with stack.client(token) as client:
        assert (await client.get("/v1/jobs")).status_code == 200
        keys = ApiKeyStore(await stack.nc.jetstream().key_value(stack.ns.bucket("apikeys")))
        assert await keys.revoke(key_id)
        refused = await wait_for(lambda: _refused(client, "/v1/jobs"), timeout_s=5, what="the revocation to reach")
        assert "revoked" in refused["detail"]
        events = await client.get(f"/v1/events?token={token}")
        assert events.status_code == 401


async def test_kinds_and_robot_id_narrow_the_token(stack: AppStack, tmp_path: Path) -> None:
    upload = await upload_file(stack.api, small_video(tmp_path))
    async with stack.client(await stack.mint(["jobs:write", "sessions:write"], kinds=["vlm"])) as client:
        refused = await client.post("/v1/jobs", json=lap_spec(upload, delay_s=3600))
        assert (refused.status_code, refused.json()["code"]) == (403, "outside_scope")
        assert (await client.post("/v1/sessions", json={"kind": "splat"})).status_code == 403
        assert (await client.post("/v1/sessions", json={"kind": "vlm"})).status_code == 201
    lap = (await stack.api.post("/v1/jobs", json=lap_spec(upload, delay_s=3600))).json()["id"]
    async with stack.client(await stack.mint(["jobs:write"], kinds=["splat"])) as client:
        assert (await client.post(f"/v1/jobs/{lap}/cancel")).status_code == 403
        results = (await client.post("/v1/jobs:cancel", json={"ids": [lap]})).json()["results"]
        assert results == [{"id": lap, "outcome": "outside_scope", "status": results[0]["status"]}]
    async with stack.client(await stack.mint(["robots:write", "robots:read"], robot_id="arm-1")) as client:
        sample = {"joint_angles": [0.1] * 6}
        assert (await client.post("/v1/robots/arm-1/joints", json=sample)).status_code == 202
        assert (await client.post("/v1/robots/arm-2/joints", json=sample)).status_code == 403
        assert (await client.get("/v1/robots/arm-2/joints/latest")).status_code == 403
        assert (await stack.api.post("/v1/robots/arm-2/joints", json=sample)).status_code == 202
        robots = await wait_for(lambda: _robots(stack.api), what="both robots in KV")
        assert robots == ["arm-1", "arm-2"]
        assert [r["id"] for r in (await client.get("/v1/robots")).json()["items"]] == ["arm-1"]


async def _robots(api: httpx.AsyncClient) -> list[str] | None:
    ids = [r["id"] for r in (await api.get("/v1/robots")).json()["items"]]
    return ids if len(ids) == 2 else None


async def test_a_subject_over_its_quota_is_a_429(stack: AppStack, tmp_path: Path) -> None:
    js = stack.nc.jetstream()
    quota = {"subject_max_queued": 1, "subject_gpu_seconds_per_day": 50}
    await (await js.key_value(stack.ns.bucket(KV_QUOTAS))).put(DEV_TENANT, json.dumps(quota).encode())
    video = small_video(tmp_path)
    alice = await stack.mint(["jobs:write", "jobs:read", "uploads:write"], subject="alice")
    async with stack.client(alice) as client:
        upload = await upload_file(client, video)
        first = await client.post("/v1/jobs", json=lap_spec(upload, delay_s=3600))
        assert first.status_code == 201, first.text
        await record_when(stack, first.json()["id"], lambda r: r.status is JobStatus.QUEUED)
        await wait_for(lambda: _queued(client), timeout_s=10, what="the queue entry to count")
        second = await client.post("/v1/jobs", json=lap_spec(upload, delay_s=3600))
        assert (second.status_code, second.json()["code"]) == (429, "quota_subject_max_queued")
        assert int(second.headers["retry-after"]) >= 1
        usage = (await client.get("/v1/usage")).json()["quota"]
        assert (usage["applies_to"], usage["max_queued"], usage["queued"]) == ("subject", 1, 1)
    async with stack.client(await stack.mint(["jobs:write", "uploads:write"], subject="bob")) as bob:
        refused = await bob.post("/v1/jobs", json=lap_spec(upload, delay_s=3600))  # alice's upload
        assert refused.status_code == 422
        upload = await upload_file(bob, video)
        assert (await bob.post("/v1/jobs", json=lap_spec(upload, delay_s=3600))).status_code == 201
    used = await js.key_value(stack.ns.bucket(KV_TENANT_USAGE))
    await used.put(subject_usage_key(DEV_TENANT, "carol"), b'{"gpu_seconds": 60.0}')
    async with stack.client(await stack.mint(["jobs:write", "uploads:write"], subject="carol")) as carol:
        over = await carol.post("/v1/jobs", json=lap_spec(await upload_file(carol, video)))
        assert (over.status_code, over.json()["code"]) == (429, "quota_subject_gpu_seconds")
    assert (await stack.api.post("/v1/jobs", json=lap_spec(upload, delay_s=3600))).status_code == 201  # the key


async def _queued(client: httpx.AsyncClient) -> bool:
    """Whether the admission now counts the first job (its queue entry, as usage shows it)."""
    usage = (await client.get("/v1/usage")).json()["quota"]
    return bool(usage["queued"] >= 1)
