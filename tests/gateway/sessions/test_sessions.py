"""Live sessions at the gateway, over real HTTP into a real FRAMES stream (no worker: the gateway's side).

Starting one, its URLs and record; frames (raw and multipart) numbered from 1 with their headers;
bad input (not an image, too large, too fast) refused; stop and reset passed on in order; another
tenant's session is a 404 on every route.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from nats.js import JetStreamContext

from contracts.envelope import EventEnvelope
from contracts.session_feed import H_POSE, H_SEQ, H_TS
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from tests.support.gateway import Gateway, Tenant
from tests.support.sessions import frames_count, frames_stored, jpeg, png

IDENTITY = [float(i == j) for i in range(4) for j in range(4)]
JPEG = {"Content-Type": "image/jpeg"}


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    return {"session_frame_max_bytes": 64 * 1024, "session_max_frames_per_s": 5.0}


async def start(tenant: Tenant, kind: str = "splat", **body: object) -> dict[str, object]:
    created = await tenant.http.post("/v1/sessions", json={"kind": kind, **body})
    assert created.status_code == 201, created.text
    out: dict[str, object] = created.json()
    return out


async def test_a_session_is_a_job_with_live_urls(gateway: Gateway, acme: Tenant) -> None:
    splat = await start(acme, params={"chunk_every": 10})
    urls = splat["urls"]
    assert isinstance(urls, dict)
    assert splat["state"] == "starting"
    assert splat["robot_id"] == splat["id"]  # a robot of its own
    assert urls["stream"] == f"ws://{gateway.url.removeprefix('http://')}/v1/sessions/{splat['id']}/stream"
    assert urls["ply"].endswith(f"/v1/sessions/{splat['id']}/ply")
    assert "/compat/so100/" in urls["compat"]
    assert (await acme.http.get(f"/v1/jobs/{splat['id']}")).json()["kind"] == "splat"
    vlm = await start(acme, "vlm", robot_id="arm-7")
    assert vlm["robot_id"] == "arm-7"
    assert vlm["urls"]["ply"] is None  # type: ignore[index]
    assert vlm["urls"]["compat"] is None  # type: ignore[index]


async def test_idempotency_and_session_kinds_only_here(acme: Tenant) -> None:
    headers = {"Idempotency-Key": "k1"}
    first = await acme.http.post("/v1/sessions", json={"kind": "vlm"}, headers=headers)
    again = await acme.http.post("/v1/sessions", json={"kind": "vlm"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    batch = await acme.http.post("/v1/sessions", json={"kind": "pose", "inputs": {"video": {"upload_id": "u"}}})
    assert batch.status_code == 422
    as_job = await acme.http.post("/v1/jobs", json={"kind": "splat"})
    assert as_job.status_code == 422
    assert "POST /v1/sessions" in as_job.json()["detail"]


async def test_frames_are_numbered_and_stored_with_their_description(
    acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    session = await start(acme)
    sid = str(session["id"])
    raw = await acme.http.post(
        f"/v1/sessions/{sid}/frames?ts=1700000000.25",
        content=jpeg(1),
        headers={"Content-Type": "image/jpeg", "Gpurelay-Pose": json.dumps(IDENTITY)},
    )
    multipart = await acme.http.post(f"/v1/sessions/{sid}/frames", files={"file": ("frame.png", png(2), "image/png")})
    assert (raw.status_code, raw.json()) == (202, {"seq": 1, "frame_count": 1})
    assert (multipart.status_code, multipart.json()) == (202, {"seq": 2, "frame_count": 2})
    first, second = await frames_stored(js, namespace, "acme", sid, 2)
    assert first.data == jpeg(1)
    assert (first.headers[H_SEQ], first.headers[H_TS]) == ("1", "1700000000.25")
    assert first.headers["Content-Type"] == "image/jpeg"
    assert json.loads(first.headers[H_POSE])[0] == 1.0
    assert (second.data, second.headers[H_SEQ], second.headers["Content-Type"]) == (png(2), "2", "image/png")
    assert second.headers.get(H_POSE) is None
    assert (await acme.http.get(f"/v1/sessions/{sid}")).json()["frames_received"] == 2
    assert await frames_count(js, namespace, "acme", sid) == 2


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"GIF89a not a frame", {"Content-Type": "image/jpeg"}, 422),
        (b"\xff\xd8\xff" + b"0" * (70 * 1024), {"Content-Type": "image/jpeg"}, 413),
        (jpeg(3), {"Content-Type": "image/jpeg", "Gpurelay-Pose": "[1, 2]"}, 422),
        (jpeg(3), {"Content-Type": "image/jpeg", "Gpurelay-Pose": "not json"}, 422),
    ],
)
async def test_bad_frames_are_refused_and_store_nothing(
    acme: Tenant, js: JetStreamContext, namespace: Namespace, content: bytes, headers: dict[str, str], status: int
) -> None:
    sid = str((await start(acme))["id"])
    refused = await acme.http.post(f"/v1/sessions/{sid}/frames", content=content, headers=headers)
    assert refused.status_code == status
    assert refused.headers["content-type"] == "application/problem+json"
    assert await frames_count(js, namespace, "acme", sid) == 0


async def test_a_multipart_frame_without_the_file_field_is_a_422(acme: Tenant) -> None:
    sid = str((await start(acme))["id"])
    refused = await acme.http.post(f"/v1/sessions/{sid}/frames", files={"image": ("f.jpg", jpeg(1), "image/jpeg")})
    assert refused.status_code == 422


async def test_frames_past_the_rate_get_429_with_retry_after(
    acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    """Twenty frames at once against 5 a second: the burst passes, the rest wait, none is stored twice."""
    sid = str((await start(acme))["id"])
    url = f"/v1/sessions/{sid}/frames"
    answers = await asyncio.gather(*(acme.http.post(url, content=jpeg(seed), headers=JPEG) for seed in range(20)))
    accepted = [a for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code != 202]
    assert 5 <= len(accepted) < 20
    assert {a.status_code for a in refused} == {429}
    assert all(int(a.headers["retry-after"]) >= 1 for a in refused)
    assert sorted(a.json()["seq"] for a in accepted) == list(range(1, len(accepted) + 1))
    assert await frames_count(js, namespace, "acme", sid) == len(accepted)


async def test_stop_and_reset_go_in_order_with_the_frames(
    acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    sid = str((await start(acme))["id"])
    frame = {"content": jpeg(1), "headers": {"Content-Type": "image/jpeg"}}
    assert (await acme.http.post(f"/v1/sessions/{sid}/frames", **frame)).status_code == 202  # type: ignore[arg-type]
    assert (await acme.http.post(f"/v1/sessions/{sid}/reset")).status_code == 202
    assert (await acme.http.post(f"/v1/sessions/{sid}/frames", **frame)).status_code == 202  # type: ignore[arg-type]
    assert (await acme.http.post(f"/v1/sessions/{sid}/stop")).status_code == 202
    after_stop = await acme.http.post(f"/v1/sessions/{sid}/frames", **frame)  # type: ignore[arg-type]
    assert after_stop.status_code == 409
    stored = await frames_stored(js, namespace, "acme", sid, 4)
    assert [m.subject.rsplit(".", 1)[1] for m in stored] == ["frames", "control", "frames", "control"]
    assert [json.loads(m.data)["action"] for m in stored if m.subject.endswith("control")] == ["reset", "stop"]
    last = await js.get_last_msg(
        namespace.stream(JOBS), Subjects(namespace).stored_job_event("acme", sid, "stop_requested")
    )
    assert EventEnvelope.model_validate_json(last.data or b"").type == "session.stop_requested"


async def test_no_snapshot_yet_is_a_404(acme: Tenant) -> None:
    sid = str((await start(acme))["id"])
    missing = await acme.http.get(f"/v1/sessions/{sid}/ply")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_another_tenants_session_is_a_404_on_every_route(
    acme: Tenant, globex: Tenant, anonymous: httpx.AsyncClient
) -> None:
    sid = str((await start(acme))["id"])
    frame = {"content": jpeg(1), "headers": {"Content-Type": "image/jpeg"}}
    attempts = [
        await globex.http.get(f"/v1/sessions/{sid}"),
        await globex.http.post(f"/v1/sessions/{sid}/frames", **frame),  # type: ignore[arg-type]
        await globex.http.post(f"/v1/sessions/{sid}/stop"),
        await globex.http.post(f"/v1/sessions/{sid}/reset"),
        await globex.http.get(f"/v1/sessions/{sid}/ply"),
        await globex.http.get(f"/v1/jobs/{sid}"),
        await acme.http.get("/v1/sessions/job_nope"),
    ]
    assert [a.status_code for a in attempts] == [404] * len(attempts)
    assert (await anonymous.get(f"/v1/sessions/{sid}")).status_code == 401
