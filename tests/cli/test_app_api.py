"""The CLI's App API verbs against the real gateway over HTTP: tokens create, session ls, robots ls|joints,
jobs cancel --filter, usage, cors ls|set."""

from __future__ import annotations

import json

import httpx
import pytest

from contracts.subjects import Namespace
from services.common.nats.server.embedded import EmbeddedNats
from tests.cli.test_jobs import make_jobs
from tests.cli.test_submit import cli_env, invoke
from tests.support.gateway import Gateway, Tenant


@pytest.fixture
async def env(gateway: Gateway, acme: Tenant, nats_server: EmbeddedNats, namespace: Namespace) -> dict[str, str]:
    """The CLI's settings for acme on this test's gateway."""
    return cli_env(gateway, acme, nats_server.url, namespace)


async def test_tokens_create_prints_a_token_that_works(env: dict[str, str], gateway: Gateway) -> None:
    made = await invoke(["tokens", "create", "-s", "jobs:read", "--subject", "user-1", "--ttl", "120"], env)
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        assert (await http.get("/v1/jobs")).status_code == 200
        assert (
            await http.post("/v1/uploads", json={"filename": "a.mp4", "content_type": "video/mp4", "size": 1})
        ).status_code == 403
    described = await invoke(["tokens", "create", "-s", "jobs:write", "--kind", "pose", "--json"], env)
    assert json.loads(described.stdout)["kinds"] == ["pose"]
    refused = await invoke(["tokens", "create", "-s", "jobs:read", "--ttl", "99999"], env)
    assert refused.exit_code == 1
    assert "ttl_s" in refused.stderr


async def test_sessions_robots_and_usage(env: dict[str, str], acme: Tenant) -> None:
    session = (await acme.http.post("/v1/sessions", json={"kind": "vlm", "robot_id": "arm-3"})).json()
    listed = await invoke(["sessions", "ls", "--kind", "vlm"], env)
    assert listed.exit_code == 0, listed.output
    assert session["id"] in listed.stdout
    assert "arm-3" in listed.stdout
    assert session["id"] not in (await invoke(["session", "ls", "--kind", "splat"], env)).stdout
    await acme.http.post(
        "/v1/robots/arm-3/joints", json={"samples": [{"joint_angles": [0.5] * 6, "seq": i} for i in range(3)]}
    )
    joints = await invoke(["robots", "joints", "arm-3", "--limit", "2"], env)
    assert joints.exit_code == 0, joints.output
    assert [json.loads(line)["sample"]["seq"] for line in joints.stdout.splitlines()] == [0, 1]
    assert "2 samples (more" in joints.stderr
    unknown = await invoke(["robots", "joints", "arm-9"], env)
    assert (unknown.exit_code, unknown.stdout) == (0, "")
    assert "robot 'arm-9' sent none (`gpurelay robots ls`" in unknown.stderr
    later = await invoke(["robots", "joints", "arm-3", "--since", "2999-01-01T00:00:00"], env)
    assert "robot 'arm-3' sent none in that window" in later.stderr
    robots = await invoke(["robots", "ls"], env)
    assert "arm-3" in robots.stdout
    await make_jobs(acme, 2)
    usage = await invoke(["usage", "--group-by", "kind", "--json"], env)
    assert usage.exit_code == 0, usage.output
    answer = json.loads(usage.stdout)
    assert (answer["total"]["jobs"], answer["total"]["sessions"]) == (2, 1)
    table = await invoke(["usage"], env)
    assert "total" in table.stdout
    assert "quota (tenant)" in table.stdout


async def test_jobs_cancel_by_filter_and_cors(env: dict[str, str], acme: Tenant) -> None:
    ids = await make_jobs(acme, 3)
    canceled = await invoke(["jobs", "cancel", "--filter", "--kind", "pose", "--json"], env)
    assert canceled.exit_code == 0, canceled.output
    assert sorted(r["id"] for r in json.loads(canceled.stdout)["results"]) == sorted(ids)
    assert {r["outcome"] for r in json.loads(canceled.stdout)["results"]} == {"requested"}
    neither = await invoke(["jobs", "cancel"], env)
    assert neither.exit_code == 2
    assert (await invoke(["cors", "set", "https://app.example.com", "http://localhost:5173"], env)).exit_code == 0
    shown = await invoke(["cors", "ls"], env)
    assert shown.stdout.split() == ["http://localhost:5173", "https://app.example.com"]
    bad = await invoke(["cors", "set", "https://app.example.com/path"], env)
    assert bad.exit_code == 1
    assert (await invoke(["cors", "set"], env)).exit_code == 0
    assert (await invoke(["cors", "ls"], env)).stdout.strip() == ""
