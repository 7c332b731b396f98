"""NaN and Infinity never get in, and a stored record that no longer validates wedges no reader.

Over real HTTP, a real WebSocket and a real nats-server: a session whose params hold a non-finite
number is a 422 naming the field (it used to be a 201, then every read of it a 500); a worker's
event or a frame's pose too. A record written straight into KV ``jobs`` that does not validate is a
409 ``invalid_record`` on every read and write of it (the API, the dashboard), lists leave it out,
and the session's socket closes 4409.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from websockets.exceptions import ConnectionClosed

from bench.harness.secrets import INGEST_SECRET
from contracts.event_ids import worker_event_id
from contracts.events.registry import EventType, make_event
from contracts.events.sessions import SessionResultPayload
from contracts.ids import tenant_key
from contracts.streams import JOBS, KV_JOBS
from contracts.subjects import Namespace
from services.common.auth.ingest_tokens import mint_ingest_token
from services.common.nats.kv import kv_entries
from tests.gateway.test_bad_input import assert_problem
from tests.support.dashboard import sign_in
from tests.support.gateway import Gateway, Tenant
from tests.support.sessions import jpeg, open_socket, until_closed

LITERALS = ["NaN", "Infinity", "-Infinity", "1e400"]
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def jobs_kv(js: JetStreamContext, namespace: Namespace, gateway: Gateway) -> KeyValue:
    return await js.key_value(namespace.bucket(KV_JOBS))


def finite_errors(problem: dict[str, Any]) -> list[list[str | int]]:
    return [error["loc"] for error in problem["errors"] if error["type"] == "finite_number"]


@pytest.mark.parametrize("literal", LITERALS)
async def test_a_session_with_a_non_finite_camera_offset_is_a_422_naming_it(
    acme: Tenant, jobs_kv: KeyValue, literal: str
) -> None:
    body = '{"kind": "splat", "params": {"camera_mount": {"xyz": [0, 0, X]}}}'.replace("X", literal)
    refused = await acme.http.post("/v1/sessions", content=body, headers=JSON)
    assert finite_errors(assert_problem(refused, 422)) == [["body", "params", "camera_mount", "xyz", 2]]
    assert await kv_entries(jobs_kv, "acme.>", meta_only=True) == []


@pytest.mark.parametrize("literal", LITERALS)
async def test_a_batch_whose_spec_holds_a_non_finite_number_is_a_422_naming_the_item(
    acme: Tenant, jobs_kv: KeyValue, literal: str
) -> None:
    first = '{"spec": {"kind": "pose", "inputs": {"video": {"url": "https://example.com/v.mp4"}}}}'
    bad = '{"spec": {"kind": "pose", "params": {"conf": 0.5}, "note": {"deep": [[X]]}}}'.replace("X", literal)
    refused = await acme.http.post("/v1/jobs:batch", content=f'{{"jobs": [{first}, {bad}]}}', headers=JSON)
    assert finite_errors(assert_problem(refused, 422)) == [["body", "jobs", 1, "spec"]]
    assert await kv_entries(jobs_kv, "acme.>", meta_only=True) == []


@pytest.mark.parametrize("literal", LITERALS)
async def test_a_worker_event_with_a_non_finite_number_deep_in_its_data_is_a_422(
    anonymous: httpx.AsyncClient, js: JetStreamContext, namespace: Namespace, gateway: Gateway, literal: str
) -> None:
    job = "job_0001"
    payload = SessionResultPayload(chunk=1, first_seq=1, last_seq=1, data={"scores": [{"loss": 0.5}]})
    event = make_event(
        EventType.SESSION_RESULT, payload, tenant="acme", source="worker/vlm", job_id=job, kind="vlm", attempt=1,
        event_id=worker_event_id(job, 1),
    )  # fmt: skip
    body = json.dumps(event.model_dump(mode="json", exclude_none=True)).replace("0.5", literal)
    token = mint_ingest_token(INGEST_SECRET.encode(), "acme", job, 1, ttl_s=60)
    headers = {**JSON, "Authorization": f"Bearer {token}"}
    refused = await anonymous.post(f"/v1/internal/jobs/{job}/events", content=body, headers=headers)
    assert finite_errors(assert_problem(refused, 422)) == [["body", "event", "data"]]
    assert (await js.stream_info(namespace.stream(JOBS))).state.messages == 0


@pytest.mark.parametrize("literal", LITERALS)
async def test_a_frame_pose_with_a_non_finite_number_is_a_422(acme: Tenant, literal: str) -> None:
    session = (await acme.http.post("/v1/sessions", json={"kind": "vlm"})).json()
    pose = f"[{literal}" + ", 0" * 15 + "]"
    headers = {"Content-Type": "image/jpeg", "Gpurelay-Pose": pose}
    refused = await acme.http.post(f"/v1/sessions/{session['id']}/frames", content=jpeg(1), headers=headers)
    assert assert_problem(refused, 422)["errors"][0]["loc"] == ["header", "Gpurelay-Pose"]


async def corrupt(kv: KeyValue, tenant: str, job_id: str) -> None:
    """Write ``null`` where the record's camera offset was (what a NaN became when it was stored)."""
    key = tenant_key(tenant, job_id)
    record = json.loads((await kv.get(key)).value or b"")
    record["spec"]["params"]["camera_mount"]["xyz"][2] = None
    await kv.put(key, json.dumps(record).encode())


def assert_invalid_record(response: httpx.Response) -> None:
    assert assert_problem(response, 409)["code"] == "invalid_record"


async def test_a_record_that_no_longer_validates_is_a_409_on_every_read_and_write_and_lists_skip_it(
    acme: Tenant, jobs_kv: KeyValue, gateway: Gateway
) -> None:
    body = {"kind": "splat", "params": {"camera_mount": {"xyz": [0, 0, 1]}}}
    broken = (await acme.http.post("/v1/sessions", json=body)).json()["id"]
    fine = (await acme.http.post("/v1/sessions", json={"kind": "vlm"})).json()["id"]
    await corrupt(jobs_kv, "acme", broken)
    for read in (
        acme.http.get(f"/v1/jobs/{broken}"),
        acme.http.get(f"/v1/sessions/{broken}"),
        acme.http.get(f"/v1/sessions/{broken}/ply"),
        acme.http.post(f"/v1/jobs/{broken}/cancel"),
        acme.http.post(f"/v1/sessions/{broken}/stop"),
        acme.http.post(f"/v1/sessions/{broken}/frames", content=jpeg(1), headers={"Content-Type": "image/jpeg"}),
    ):
        assert_invalid_record(await read)
    listed = await acme.http.get("/v1/jobs")
    assert listed.status_code == 200
    assert [job["id"] for job in listed.json()["items"]] == [fine]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as browser:
        assert (await sign_in(browser, acme.key)).status_code == 303
        page = await browser.get(f"/jobs/{broken}")
        assert (page.status_code, "text/html" in page.headers["content-type"]) == (409, True)
        assert "Invalid record" in page.text
        listing = await browser.get("/jobs")
        assert listing.status_code == 200
        assert fine in listing.text
        assert broken not in listing.text


async def test_the_socket_of_a_session_whose_record_no_longer_validates_closes_4409(
    acme: Tenant, jobs_kv: KeyValue
) -> None:
    body = {"kind": "splat", "params": {"camera_mount": {"xyz": [0, 0, 1]}}}
    session = (await acme.http.post("/v1/sessions", json=body)).json()
    await corrupt(jobs_kv, "acme", session["id"])
    async with open_socket(session["urls"]["stream"], acme.key) as ws:
        try:
            _, code = await until_closed(ws)
        except ConnectionClosed:
            code = ws.close_code
    assert code == 4409
