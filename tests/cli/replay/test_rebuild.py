"""``gpurelay replay --rebuild jobs``: the fold of JOBS against what the real dispatcher wrote to KV."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from typer.testing import CliRunner

from contracts.ids import new_id, tenant_key
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.route_table import RouteTable
from contracts.streams import KV_JOBS, Declarations
from contracts.subjects import Namespace, Subjects
from services.cli.main import app
from services.cli.replay.rebuild import REBUILD_BUCKET
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.service import Dispatcher
from tests.support.dispatcher import POSE, dispatcher_settings, local_route, request_cancel, submit, wait_record

WAITS = {"kind": "pose", "inputs": {"video": {"upload_id": "upl_never"}}}


async def rebuild(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """``gpurelay replay --rebuild jobs ARGS``; its JSON summary."""
    run = CliRunner().invoke
    result = await asyncio.wait_for(asyncio.to_thread(run, app, ["replay", "--rebuild", "jobs", *args], env=env), 60)
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


async def test_rebuild_reports_differences_and_apply_swaps_the_fold_in(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    declared: Declarations,
    js: JetStreamContext,
    subjects: Subjects,
) -> None:
    routes = tmp_path / "routes.yaml"
    table = RouteTable(profiles={"dev": {"pose": local_route("noop", price_per_gpu_hour=3.6)}})  # type: ignore[dict-item]
    routes.write_text(yaml.safe_dump(table.model_dump(mode="json")))
    settings = dispatcher_settings(nats_server.url, namespace, tmp_path / "data", route_table=routes, local_pool_size=1)
    kv = await js.key_value(namespace.bucket(KV_JOBS))
    dispatcher = Dispatcher(settings)
    await dispatcher.start()
    try:
        ran, waiting, canceled = [await submit(js, kv, subjects, spec) for spec in (POSE, WAITS, WAITS)]
        await request_cancel(js, subjects, canceled)
        await wait_record(kv, ran, lambda r: r.status is JobStatus.SUCCEEDED)
        await wait_record(kv, canceled, lambda r: r.status is JobStatus.CANCELED)
    finally:
        await dispatcher.stop()
    keys = {name: tenant_key("acme", job) for name, job in (("ran", ran), ("waiting", waiting), ("canceled", canceled))}
    originals = {name: (await kv.get(key)).value for name, key in keys.items()}
    assert JobRecord.model_validate_json(originals["ran"] or b"").cost.estimated_usd > 0  # priced by the route

    corrupted = JobRecord.model_validate_json(originals["ran"] or b"").model_copy(update={"attempt": 3})
    await kv.put(keys["ran"], corrupted.model_dump_json().encode())
    await kv.delete(keys["canceled"])
    ghost = JobRecord.new(
        new_id("job"), "acme", JobRecord.model_validate_json(originals["waiting"] or b"").spec, corrupted.created_at
    )
    await kv.put(tenant_key("acme", ghost.id), ghost.model_dump_json().encode())
    env = {
        "GPURELAY_NATS_URL": nats_server.url,
        "GPURELAY_NAMESPACE": namespace.name,
        "GPURELAY_DATA_DIR": str(tmp_path / "cli"),
    }
    args = ["--routes", str(routes), "--route-profile", "dev"]

    report = await rebuild(args, env)
    assert report["rebuilt"] == 3
    assert report["same"] == 1
    assert report["different"] == {keys["ran"]: ["attempt"]}
    assert report["missing"] == [keys["canceled"]]
    assert report["only_live"] == [tenant_key("acme", ghost.id)]
    assert report["applied"] == []
    projection = await js.key_value(report["projection"])
    assert (await projection.get(keys["canceled"])).value == originals["canceled"]
    assert (await kv.get(keys["ran"])).value == corrupted.model_dump_json().encode()  # nothing swapped yet

    applied = await rebuild([*args, "--apply"], env)
    assert sorted(applied["applied"]) == sorted([keys["ran"], keys["canceled"]])
    for name, key in keys.items():
        assert (await kv.get(key)).value == originals[name], name  # exactly what the dispatcher had written
    assert (await kv.get(tenant_key("acme", ghost.id))).value == ghost.model_dump_json().encode()  # left alone
    try:
        await js.key_value(namespace.bucket(REBUILD_BUCKET))
        raise AssertionError("the rebuilt projection should be gone after --apply")
    except BucketNotFoundError:
        pass
    clean = await rebuild(args, env)
    assert (clean["same"], clean["different"], clean["missing"]) == (3, {}, [])
