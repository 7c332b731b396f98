"""Jobs over real HTTP: submit, idempotency, read, list, cancel, isolation, and the events in JOBS."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, get_args

import httpx
import pytest
from nats.js import JetStreamContext

from bench.harness.secrets import SIGNING_SECRET
from contracts.api.jobs import IdempotencyClaim, JobCreate
from contracts.envelope import EventEnvelope
from contracts.events.registry import CREATED_RECORD_REVISION
from contracts.ids import new_id, tenant_key
from contracts.job_parts import Artifact, JobStatus
from contracts.job_record import JobRecord
from contracts.specs.jobs import SPEC_MODELS, parse_job_spec
from contracts.streams import JOBS, KV_IDEMPOTENCY, KV_JOBS
from contracts.subjects import Namespace, Subjects
from services.common.auth.tokens import verify_token
from services.common.storage import Storage, result_key
from services.dispatcher.fold.records import apply
from tests.support.gateway import Gateway, Tenant, presign, stored

PROBLEM = "application/problem+json"


def pose(upload_id: str, **params: Any) -> dict[str, Any]:
    return {"kind": "pose", "inputs": {"video": {"upload_id": upload_id}}, "params": params}


def lap(upload_id: str) -> dict[str, Any]:
    return {"kind": "lap_compare", "inputs": {"video": {"upload_id": upload_id}}}


async def submit(t: Tenant, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await t.http.post("/v1/jobs", json=body, headers=headers)


async def created(t: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = await submit(t, body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def write_record(js: JetStreamContext, ns: Namespace, record: JobRecord) -> None:
    """Write a record as the dispatcher would (it is the single writer after creation)."""
    kv = await js.key_value(ns.bucket(KV_JOBS))
    await kv.put(tenant_key(record.tenant, record.id), record.model_dump_json().encode())


def test_job_create_covers_every_spec() -> None:
    assert set(get_args(get_args(JobCreate)[0])) == set(SPEC_MODELS.values())


async def test_create_then_read(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    upload_id = (await presign(acme, 10))["id"]  # pending uploads are accepted
    response = await submit(acme, pose(upload_id, batch_size=4))
    assert response.status_code == 201, response.text
    job = response.json()
    job_id = job["id"]
    assert (job["status"], job["kind"], job["spec"]["params"]["batch_size"]) == ("created", "pose", 4)
    assert response.headers["location"] == job["urls"]["self"] == f"{gateway.url}/v1/jobs/{job_id}"
    assert job["urls"]["cancel"] == f"{gateway.url}/v1/jobs/{job_id}/cancel"
    events_url = httpx.URL(job["urls"]["events"])
    assert events_url.path == f"/v1/jobs/{job_id}/events"
    token = events_url.params["token"]
    claims = verify_token(SIGNING_SECRET.encode(), token, "api", job=job_id, tenant="acme")
    assert (claims["scopes"], claims["key_id"]) == (["events:read"], acme.key_id)

    read = await acme.http.get(f"/v1/jobs/{job_id}")
    assert read.status_code == 200
    assert read.json()["id"] == job_id
    assert read.json()["status"] == "created"
    [event] = await stored(js, namespace, subjects.job_events("acme", job_id))
    assert (event.type, event.id, event.job_id, event.kind) == (
        "job.created",
        f"created-{job_id}",
        job_id,
        "pose",
    )
    assert event.data["spec"]["inputs"] == {"video": {"upload_id": upload_id}}


async def test_job_created_carries_the_revision_of_the_record_the_fold_would_make(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    upload_id = (await presign(acme, 10))["id"]
    job_id = (await created(acme, pose(upload_id, batch_size=2)))["id"]
    kv = await js.key_value(namespace.bucket(KV_JOBS))
    entry = await kv.get(tenant_key("acme", job_id))
    msg = await js.get_last_msg(namespace.stream(JOBS), subjects.stored_job_event("acme", job_id, "created"))
    assert (msg.headers or {})[CREATED_RECORD_REVISION] == str(entry.revision)
    # the fold makes the record from the event instead of reading it: it must be the one created
    assert apply(None, EventEnvelope.from_json_bytes(msg.data or b"{}")) == JobRecord.model_validate_json(
        entry.value or b""
    )


URL_INPUT = {"kind": "pose", "inputs": {"video": {"url": "https://x.test/a.mp4"}}}


@pytest.mark.parametrize(
    ("make", "loc", "words"),
    [
        (lambda u: {"kind": "teleport", "inputs": {}}, ["body", "kind"], "pose"),
        (lambda u: {"inputs": {}}, ["body", "kind"], "required"),
        (lambda u: pose(u, batch_size=0), ["body", "params", "batch_size"], "greater than"),
        (lambda u: {"kind": "pose", "inputs": {"vid": {"upload_id": u}}}, ["body", "inputs"], "'vid'"),
        (lambda u: pose("upl_missing"), ["body", "inputs", "video", "upload_id"], "upl_missing"),
        (lambda u: URL_INPUT, ["body", "inputs", "video", "url"], "url inputs"),
    ],
    ids=["bad-kind", "no-kind", "batch-size-0", "unknown-input", "missing-upload", "url-input"],
)
async def test_validation_names_the_field(
    acme: Tenant,
    js: JetStreamContext,
    namespace: Namespace,
    subjects: Subjects,
    make: Callable[[str], dict[str, Any]],
    loc: list[str],
    words: str,
) -> None:
    response = await submit(acme, make((await presign(acme, 10))["id"]))
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    errors = response.json()["errors"]
    assert any(e["loc"] == loc and words in e["msg"] for e in errors), errors
    assert await stored(js, namespace, subjects.tenant_jobs("acme")) == []


async def test_idempotency_key(
    acme: Tenant, globex: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    body = pose((await presign(acme, 10))["id"])
    first, again = await submit(acme, body, "order-1"), await submit(acme, body, "order-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other = await submit(acme, pose(body["inputs"]["video"]["upload_id"], batch_size=2), "order-1")
    assert other.status_code == 422
    assert other.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert len((await acme.http.get("/v1/jobs")).json()["items"]) == 1
    assert [e.type for e in await stored(js, namespace, subjects.tenant_jobs("acme"))] == ["job.created"]
    assert (await submit(globex, body, "order-1")).status_code == 422  # keys are per tenant; its upload is not
    assert (await submit(acme, body, "x" * 256)).status_code == 422


async def test_replay_finishes_a_half_done_creation(
    acme: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    """A claim with no record or event (a crash right after the claim): the replay completes it."""
    body = lap((await presign(acme, 10))["id"])
    claim = IdempotencyClaim(job_id=new_id("job"), body_sha256=IdempotencyClaim.digest(parse_job_spec(body)))
    kv = await js.key_value(namespace.bucket(KV_IDEMPOTENCY))
    await kv.create(IdempotencyClaim.kv_key("acme", "crashed"), claim.model_dump_json().encode())
    response = await submit(acme, body, "crashed")
    assert response.status_code == 200
    assert response.json()["id"] == claim.job_id
    assert (await acme.http.get(f"/v1/jobs/{claim.job_id}")).status_code == 200
    assert len(await stored(js, namespace, subjects.job_events("acme", claim.job_id))) == 1


async def test_concurrent_duplicates_create_one_job(
    acme: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    body = pose((await presign(acme, 10))["id"])
    responses = await asyncio.gather(*(submit(acme, body, "same") for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [200] * 5 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len((await acme.http.get("/v1/jobs")).json()["items"]) == 1
    assert len(await stored(js, namespace, subjects.tenant_jobs("acme"))) == 1


async def test_list_filters_and_pagination(acme: Tenant, globex: Tenant) -> None:
    upload_id = (await presign(acme, 10))["id"]
    jobs = [await created(acme, pose(upload_id) if i % 3 else lap(upload_id)) for i in range(7)]
    newest_first = [j["id"] for j in reversed(jobs)]
    seen: list[str] = []
    cursor: str | None = None
    for size in (3, 3, 1):
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await acme.http.get("/v1/jobs", params=params)).json()
        assert len(page["items"]) == size
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert cursor is None
    assert seen == newest_first

    async def ids(**params: Any) -> list[str]:
        response = await acme.http.get("/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await ids(kind="lap_compare") == [jobs[i]["id"] for i in (6, 3, 0)]
    assert await ids(status="created", kind="pose", limit=100) == [jobs[i]["id"] for i in (5, 4, 2, 1)]
    assert await ids(status="succeeded") == []
    assert await ids(created_after=jobs[4]["created_at"]) == newest_first[:3]
    assert await ids(created_before=jobs[2]["created_at"]) == newest_first[5:]
    invalid: list[dict[str, Any]] = [{"cursor": "nope"}, {"limit": 0}, {"limit": 101}, {"status": "x"}]
    for params in invalid:
        response = await acme.http.get("/v1/jobs", params=params)
        assert response.status_code == 422, params
        assert response.json()["errors"][0]["loc"][0] == "query", params
    assert (await globex.http.get("/v1/jobs")).json() == {"items": [], "next_cursor": None}


async def test_cancel_is_idempotent(
    acme: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    job_id = (await created(acme, lap((await presign(acme, 10))["id"])))["id"]
    for _ in range(2):
        response = await acme.http.post(f"/v1/jobs/{job_id}/cancel")
        assert response.status_code == 202
        assert response.json()["id"] == job_id
    [event] = await stored(js, namespace, subjects.job_event("acme", job_id, "cancel_requested"))
    assert (event.type, event.id) == ("job.cancel_requested", f"cancel-{job_id}")
    # The gateway never writes the record after creation: the dispatcher folds the request.
    assert (await acme.http.get(f"/v1/jobs/{job_id}")).json()["status"] == "created"


async def test_terminal_job_artifacts_and_cancel_conflict(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    job = await created(acme, lap((await presign(acme, 10))["id"]))
    storage: Storage = gateway.app.state.storage
    key = result_key("", "acme", job["id"], "out/final.ply")
    await storage.put(key, b"ply data", "application/octet-stream")
    now = datetime.now(UTC)
    record = JobRecord.model_validate({k: v for k, v in job.items() if k != "urls"} | {"tenant": "acme"})
    for status in (JobStatus.QUEUED, JobStatus.DISPATCHED, JobStatus.SUCCEEDED):
        record = record.transition(status, now)
    live = Artifact(name="out/final.ply", key=key, size=8)
    gone = Artifact(name="old.ply", key=key + ".old", size=1, expired=True)
    await write_record(js, namespace, record.model_copy(update={"artifacts": (live, gone)}))

    read = (await acme.http.get(f"/v1/jobs/{job['id']}")).json()
    assert read["status"] == "succeeded"
    assert [a["name"] for a in read["artifacts"]] == ["out/final.ply"]
    async with httpx.AsyncClient(timeout=30) as http:
        download = await http.get(read["artifacts"][0]["url"])
    assert download.status_code == 200
    assert download.content == b"ply data"
    conflict = await acme.http.post(f"/v1/jobs/{job['id']}/cancel")
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == PROBLEM


async def test_other_tenants_jobs_are_not_found(acme: Tenant, globex: Tenant) -> None:
    upload_id = (await presign(acme, 10))["id"]
    job_id = (await created(acme, pose(upload_id)))["id"]
    for bad in (job_id, "job_missing", "a.b"):
        assert (await globex.http.get(f"/v1/jobs/{bad}")).status_code == 404
        assert (await globex.http.post(f"/v1/jobs/{bad}/cancel")).status_code == 404
    refused = await submit(globex, pose(upload_id))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == [
        "body",
        "inputs",
        "video",
        "upload_id",
    ]


async def test_missing_key_is_unauthorized(anonymous: httpx.AsyncClient) -> None:
    for response in (
        await anonymous.post("/v1/jobs", json={"kind": "splat"}),
        await anonymous.get("/v1/jobs"),
        await anonymous.get("/v1/jobs/job_x"),
        await anonymous.post("/v1/jobs/job_x/cancel"),
    ):
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
