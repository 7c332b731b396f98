"""``POST /v1/jobs:batch``: per-item results, per-item Idempotency-Key, at most 1,000 items."""

from __future__ import annotations

import pytest

from tests.support.gateway import Tenant

POSE = {"kind": "pose", "inputs": {"video": {"url": "https://example.com/v.mp4"}}}


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    """URL inputs allowed."""
    return {"allow_url_inputs": True}


async def test_each_item_gets_its_own_result_and_an_idempotency_key_replays(acme: Tenant) -> None:
    items = [
        {"spec": POSE, "idempotency_key": "user-7"},
        {"spec": POSE | {"priority": 9}},
        {"spec": {"kind": "pose", "inputs": {}}},  # no video
        {"spec": {"kind": "vlm"}},  # a session kind
    ]
    response = await acme.http.post("/v1/jobs:batch", json={"jobs": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["index"], r["status"]) for r in results] == [(0, 201), (1, 201), (2, 422), (3, 422)]
    assert results[1]["job"]["spec"]["priority"] == 9
    assert results[2]["problem"]["errors"][0]["loc"][:4] == ["body", "jobs", 2, "spec"]
    again = await acme.http.post("/v1/jobs:batch", json={"jobs": items[:1]})
    [replay] = again.json()["results"]
    assert (replay["status"], replay["job"]["id"]) == (200, results[0]["job"]["id"])
    read = await acme.http.get(f"/v1/jobs/{results[1]['job']['id']}")
    assert read.status_code == 200


async def test_more_than_1000_items_is_a_422(acme: Tenant) -> None:
    response = await acme.http.post("/v1/jobs:batch", json={"jobs": [{"spec": POSE}] * 1001})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
