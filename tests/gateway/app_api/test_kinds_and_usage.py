"""GET /v1/kinds against the real spec models, and GET /v1/usage against the jobs' recorded cost."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.api.kinds import params_schema
from contracts.specs.jobs import SPEC_MODELS, JobKind, parse_job_spec
from tests.support.app_api import AppStack, lap_spec, record_when, small_video, upload_file


def _defaults(schema: dict[str, Any]) -> dict[str, Any]:
    return {name: prop["default"] for name, prop in schema["properties"].items() if "default" in prop}


def _params_model(kind: str) -> Any:
    return SPEC_MODELS[JobKind(kind)].model_fields["params"].annotation


async def test_kinds_are_the_spec_models_with_the_route_tables_gpus_and_price(stack: AppStack, tmp_path: Path) -> None:
    kinds = {k["kind"]: k for k in (await stack.api.get("/v1/kinds")).json()["items"]}
    assert list(kinds) == ["lap_compare", "splat", "vlm"]  # the kinds the stack's route table routes
    lap = kinds["lap_compare"]
    assert (lap["session"], lap["gpus"], lap["price_per_gpu_second"]) == (False, ["T4"], pytest.approx(0.001))
    assert lap["inputs"] == [
        {"name": "video", "required": True, "accepts": ["video/*"]},
        {"name": "reference", "required": False, "accepts": ["video/*"]},
    ]
    assert "lap_time_delta_s" in lap["result"]["fields"]
    assert (kinds["splat"]["session"], kinds["splat"]["inputs"]) == (True, [])
    upload = await upload_file(stack.api, small_video(tmp_path))
    for kind, listed in kinds.items():
        schema = listed["params_schema"]
        assert schema == params_schema(JobKind(kind))
        model = _params_model(kind)
        defaults = _defaults(schema)
        assert model.model_validate(defaults).model_dump(mode="json", include=set(defaults)) == defaults
        for name, prop in schema["properties"].items():
            if isinstance(prop.get("maximum"), int | float) and prop.get("type") in ("integer", "number"):
                model.model_validate({name: prop["maximum"]})
                with pytest.raises(ValidationError):
                    model.model_validate({name: prop["maximum"] + 1})
        if listed["session"]:
            created = await stack.api.post("/v1/sessions", json={"kind": kind, "params": defaults})
        else:
            inputs = {i["name"]: {"upload_id": upload} for i in listed["inputs"] if i["required"]}
            spec = {"kind": kind, "inputs": inputs, "params": defaults, "delay_s": 3600}
            parse_job_spec(spec)
            created = await stack.api.post("/v1/jobs", json=spec)
        assert created.status_code == 201, (kind, created.text)


async def test_usage_sums_are_the_jobs_recorded_cost(stack: AppStack, tmp_path: Path) -> None:
    video = small_video(tmp_path)
    mine = [
        (await stack.api.post("/v1/jobs", json=lap_spec(await upload_file(stack.api, video)))).json()["id"]
        for _ in range(2)
    ]
    async with stack.client(
        await stack.mint(["jobs:write", "jobs:read", "uploads:write", "sessions:write"], subject="alice")
    ) as alice:
        theirs = (await alice.post("/v1/jobs", json=lap_spec(await upload_file(alice, video)))).json()["id"]
        session = (await alice.post("/v1/sessions", json={"kind": "vlm"})).json()["id"]
        await alice.post(f"/v1/sessions/{session}/stop")
        jobs = [*mine, theirs, session]
        await asyncio.gather(*(record_when(stack, j, lambda r: r.terminal, 120) for j in jobs))
        alice_usage = (await alice.get("/v1/usage", params={"group_by": "kind"})).json()
    records = {j: (await stack.api.get(f"/v1/jobs/{j}")).json() for j in jobs}
    assert {r["status"] for r in records.values()} == {"succeeded"}
    assert all(records[j]["cost"]["gpu_seconds"] > 0 for j in [*mine, theirs])
    by_kind = (await stack.api.get("/v1/usage", params={"group_by": "kind"})).json()
    total = by_kind["total"]
    assert (total["jobs"], total["sessions"]) == (3, 1)
    assert total["gpu_seconds"] == pytest.approx(sum(r["cost"]["gpu_seconds"] for r in records.values()), abs=1e-6)
    assert total["cost_usd"] == pytest.approx(sum(r["cost"]["estimated_usd"] for r in records.values()), abs=1e-9)
    lap = next(g for g in by_kind["groups"] if g["key"] == "lap_compare")
    assert lap["cost_usd"] == pytest.approx(lap["gpu_seconds"] * 0.001, rel=1e-6)
    by_subject = {
        g["key"]: g for g in (await stack.api.get("/v1/usage", params={"group_by": "subject"})).json()["groups"]
    }
    assert set(by_subject) == {"alice", None}
    assert (by_subject["alice"]["jobs"], by_subject["alice"]["sessions"]) == (1, 1)
    assert by_subject[None]["gpu_seconds"] == pytest.approx(
        sum(records[j]["cost"]["gpu_seconds"] for j in mine), abs=1e-6
    )
    assert alice_usage["total"]["gpu_seconds"] == pytest.approx(by_subject["alice"]["gpu_seconds"], abs=1e-6)
    assert alice_usage["quota"]["applies_to"] == "subject"
    by_day = (await stack.api.get("/v1/usage")).json()
    assert [g["key"] for g in by_day["groups"]] == [datetime.now(UTC).date().isoformat()]
    assert by_day["quota"]["applies_to"] == "tenant"
    later, after = ((datetime.now(UTC) + timedelta(days=d)).isoformat() for d in (1, 2))
    empty = (await stack.api.get("/v1/usage", params={"from": later, "to": after})).json()
    assert (empty["groups"], empty["total"]["jobs"]) == ([], 0)
    assert (await stack.api.get("/v1/usage", params={"from": later})).status_code == 422  # after to (now)
