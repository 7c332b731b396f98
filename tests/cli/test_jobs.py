"""``gpurelay jobs ls|show|cancel`` against the real gateway over HTTP."""

from __future__ import annotations

import asyncio
import json

import pytest
from nats.js import JetStreamContext

from contracts.subjects import Namespace
from services.common.nats.server.embedded import EmbeddedNats
from tests.cli.test_submit import cli_env, invoke, stored
from tests.support.gateway import Gateway, Tenant


@pytest.fixture
async def env(gateway: Gateway, acme: Tenant, nats_server: EmbeddedNats, namespace: Namespace) -> dict[str, str]:
    """The CLI's settings for acme on this test's gateway."""
    return cli_env(gateway, acme, nats_server.url, namespace)


async def created(acme: Tenant, path: str, body: dict[str, object]) -> dict[str, object]:
    """POST ``body`` to ``path`` and its 201 answer; a 503 (NATS slow on a loaded machine, as the gateway
    says) is asked again after a second, as a client does (a CI run met one making an upload)."""
    for _ in range(5):
        response = await acme.http.post(path, json=body)
        if response.status_code != 503:
            break
        await asyncio.sleep(1.0)
    assert response.status_code == 201, response.text
    answer: dict[str, object] = response.json()
    return answer


async def make_jobs(acme: Tenant, n: int) -> list[str]:
    """``n`` pose jobs of acme (on one pending upload), newest first."""
    upload = await created(acme, "/v1/uploads", {"filename": "v.mp4", "content_type": "video/mp4", "size": 10})
    inputs = {"video": {"upload_id": upload["id"]}}
    ids = [str((await created(acme, "/v1/jobs", {"kind": "pose", "inputs": inputs}))["id"]) for _ in range(n)]
    return ids[::-1]


async def test_ls_follows_the_cursor_and_filters(env: dict[str, str], acme: Tenant) -> None:
    ids = await make_jobs(acme, 3)
    every = await invoke(["jobs", "ls", "--limit", "3", "--page-size", "2"], env)
    assert every.exit_code == 0, every.output
    rows = [line for line in every.stdout.splitlines() if "job_" in line]
    assert [next(w for w in row.split() if w.startswith("job_")) for row in rows] == ids
    assert "3 jobs" in every.stdout

    two = await invoke(["jobs", "ls", "--limit", "2", "--status", "created", "--kind", "pose"], env)
    assert two.exit_code == 0, two.output
    assert [i for i in ids if i in two.stdout] == ids[:2]
    none = await invoke(["jobs", "ls", "--kind", "nerf"], env)
    assert none.exit_code == 0, none.output
    assert "job_" not in none.stdout
    bad = await invoke(["jobs", "ls", "--status", "sleeping"], env)
    assert bad.exit_code == 2


async def test_ls_piped_prints_whole_ids_whatever_the_width(env: dict[str, str], acme: Tenant) -> None:
    """``gpurelay jobs ls | grep``: not a terminal, so rich would fit the table to ``COLUMNS``."""
    ids = await make_jobs(acme, 2)
    narrow = await invoke(["jobs", "ls"], {**env, "COLUMNS": "60"})
    assert narrow.exit_code == 0, narrow.output
    assert [i for i in ids if i in narrow.stdout] == ids
    assert "…" not in narrow.stdout


async def test_show_table_json_and_missing(env: dict[str, str], acme: Tenant) -> None:
    (job_id,) = await make_jobs(acme, 1)
    table = await invoke(["jobs", "show", job_id], env)
    assert table.exit_code == 0, table.output
    assert job_id in table.stdout
    assert "created" in table.stdout
    assert "1 of 3" in table.stdout
    raw = await invoke(["jobs", "show", job_id, "--json"], env)
    assert raw.exit_code == 0, raw.output
    record = json.loads(raw.stdout)
    assert (record["id"], record["kind"], record["status"]) == (job_id, "pose", "created")

    missing = await invoke(["jobs", "show", "job_missing"], env)
    assert missing.exit_code == 1
    assert "404" in missing.stderr
    assert "No job 'job_missing'" in missing.stderr


async def test_cancel_publishes_cancel_requested(
    env: dict[str, str], acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    (job_id,) = await make_jobs(acme, 1)
    result = await invoke(["jobs", "cancel", job_id], env)
    assert result.exit_code == 0, result.output
    assert f"cancel requested for {job_id}" in result.stderr
    (event,) = await stored(js, namespace, f"jobs.acme.{job_id}.cancel_requested")
    assert event.job_id == job_id
    missing = await invoke(["jobs", "cancel", "job_missing"], env)
    assert missing.exit_code == 1


async def test_no_api_key_is_a_usage_error(env: dict[str, str]) -> None:
    result = await invoke(["jobs", "ls"], {**env, "GPURELAY_API_KEY": ""})
    assert result.exit_code == 2
    assert "no API key" in result.stderr
