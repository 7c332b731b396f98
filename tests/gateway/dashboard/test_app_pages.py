"""The dashboard's App API pages over real HTTP: the new-job form built from GET /v1/kinds (only routed
kinds, each with its GPUs and price), the usage page (per day and per kind, the chart's data, the quotas),
and the page token, a full-access scoped token that cannot mint tokens."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.dashboard import page_token, sign_in, unlabelled_controls
from tests.support.gateway import Gateway, Tenant, presign

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def gateway_overrides(tmp_path: Path) -> dict[str, object]:
    """A route table routing lap_compare (on a T4, 1.8 USD per GPU-hour) and vlm only."""
    table = yaml.safe_load((ROOT / "deploy" / "routes.yaml").read_text())
    dev = table["profiles"]["dev"]
    dev["lap_compare"] |= {"gpus": ["T4"], "price_per_gpu_hour": 1.8}
    table["profiles"]["dev"] = {"lap_compare": dev["lap_compare"], "vlm": dev["vlm"]}
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(table))
    return {"route_table": tmp_path / "routes.yaml"}


@pytest.fixture
async def signed_in(gateway: Gateway, acme: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client signed in as ``acme``."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        assert (await sign_in(http, acme.key)).status_code == 303
        yield http


async def test_the_new_job_form_reads_the_routed_kinds(signed_in: httpx.AsyncClient) -> None:
    form = (await signed_in.get("/jobs/new")).text
    assert re.findall(r'<option value="([a-z_]+)"', form.split('id="kind"')[1].split("</select>")[0]) == ["lap_compare"]
    assert "Runs on T4; $1.80 per GPU-hour." in form
    assert 'name="param:downscale_width"' in form
    assert 'name="input:video"' in form
    assert 'accept="video/*"' in form
    assert unlabelled_controls(form) == []
    unrouted = (await signed_in.get("/jobs/new?kind=pose")).text
    assert 'name="kind-of-fields" value="lap_compare"' in unrouted  # pose is not routed here: the first kind


async def test_the_usage_page_shows_days_kinds_chart_data_and_quotas(
    signed_in: httpx.AsyncClient, acme: Tenant
) -> None:
    signed = await presign(acme, 1024)
    for _ in range(2):
        created = await acme.http.post(
            "/v1/jobs", json={"kind": "lap_compare", "inputs": {"video": {"upload_id": signed["id"]}}}
        )
        assert created.status_code == 201
    html = (await signed_in.get("/usage?days=7")).text
    assert "The last 7 days: 2 jobs and 0 sessions" in html
    chart = json.loads(
        re.search(r'<script type="application/json" id="usage-data">(.*?)</script>', html, re.S).group(1)
    )  # type: ignore[union-attr]
    assert len(chart["days"]) == len(chart["gpu_seconds"]) == len(chart["cost_usd"]) == 7
    assert chart["days"] == sorted(chart["days"])
    assert "<td>lap_compare</td><td>2</td>" in html
    assert "jobs queued of no limit" in html
    assert (await signed_in.get("/usage?days=0")).status_code == 422


async def test_the_page_token_reaches_what_the_key_does_but_cannot_mint(
    signed_in: httpx.AsyncClient, gateway: Gateway
) -> None:
    token = page_token((await signed_in.get("/jobs")).text)
    async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        assert (await api.get("/v1/webhooks")).status_code == 200
        assert (await api.get("/v1/cors")).status_code == 200
        assert (await api.get("/v1/jobs")).status_code == 200
        minted = await api.post("/v1/tokens", json={"scopes": ["jobs:read"]})
        assert minted.status_code == 403
