"""Sessions fed from a source, on both worker paths, and what the gateway refuses about recordings and sources.

A replay at ``"max"`` speed with a frame buffer of 2 takes every recorded frame (the feeder waits for
the worker, none is dropped) and matches the recorded joints again; on the gateway-feed path the
Modal-like worker publishes through ``/v1/internal/sessions/{id}/source`` (it has no NATS). The
refusals: another tenant's recording (404), a replay of a running session (409), a source that is
running, not a zip or beside a robot_id, an export of no session (422), a client's frame to a sourced
session (409), and a zip that is no dataset (the session fails with ``invalid_dataset``).
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx
import nats
import pytest

from contracts.streams import KV_APIKEYS
from contracts.subjects import Namespace
from services.common.auth.apikeys import ApiKeyStore
from tests.e2e.support import SessionStack, record_when, settled
from tests.support.sessions import jpeg

pytestmark = pytest.mark.timeout(180)
T0 = 1_760_000_000.0


async def post(api: httpx.AsyncClient, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    answer = await api.post(path, json=body)
    assert answer.status_code == status, answer.text
    out: dict[str, Any] = answer.json()
    return out


async def ended_session(env: dict[str, str], api: httpx.AsyncClient, robot: str, frames: int) -> str:
    sid = (await post(api, "/v1/sessions", {"kind": "splat", "robot_id": robot}))["id"]
    for i in range(frames):
        sample = {"joint_angles": [0.01 * i + 0.1 * j for j in range(6)], "ts": T0 + i / 10}
        assert (await api.post(f"/v1/robots/{robot}/joints", json=sample)).status_code == 202
        frame = await api.post(f"/v1/sessions/{sid}/frames", params={"ts": T0 + i / 10}, content=jpeg(i),
                               headers={"Content-Type": "image/jpeg"})  # fmt: skip
        assert frame.status_code == 202, frame.text
    await record_when(env, sid, lambda r: r.session is not None and r.session.last_result_seq >= frames)
    assert (await api.post(f"/v1/sessions/{sid}/stop")).status_code == 202
    assert (await settled(env, sid)).status == "succeeded"
    return sid


async def test_a_replay_at_max_speed_takes_every_frame_on_either_path(session_stack: SessionStack) -> None:
    env, api = session_stack
    sid = await ended_session(env, api, "arm-src", 6)
    original = (await api.get(f"/v1/sessions/{sid}/recording")).json()
    replay = await post(api, f"/v1/sessions/{sid}/replay", {"params": {"frame_buffer": 2}, "speed": "max"})
    record = await settled(env, replay["id"], timeout_s=60)
    assert record.status == "succeeded", record.error
    assert record.session is not None
    assert record.session.robot_id == replay["id"]  # a robot of its own
    assert record.progress.metrics["frames_dropped"] == 0
    assert record.result is not None
    assert record.result["seqs"] == [1, 2, 3, 4, 5, 6]
    assert [j for j in record.result["joints"]] == [f["joints"]["angles"] for f in original["frames"]]
    replayed = (await api.get(f"/v1/sessions/{replay['id']}/recording")).json()
    assert [f["ts"] for f in replayed["frames"]] == [f["ts"] for f in original["frames"]]
    assert (await api.get(f"/v1/sessions/{replay['id']}")).json()["frames_received"] == 6


async def other_tenant_key(env: dict[str, str]) -> str:
    nc = await nats.connect(env["GPURELAY_NATS_URL"])
    try:
        _, key = await ApiKeyStore(await nc.jetstream().key_value(Namespace("").bucket(KV_APIKEYS))).create("other")
        return key
    finally:
        await nc.close()


def fields(problem: httpx.Response) -> list[list[Any]]:
    return [e["loc"] for e in problem.json()["errors"]]


async def upload(api: httpx.AsyncClient, data: bytes, name: str, content_type: str) -> str:
    signed = await post(api, "/v1/uploads", {"filename": name, "content_type": content_type, "size": len(data)})
    async with httpx.AsyncClient(timeout=30) as storage:
        assert (await storage.put(signed["url"], content=data, headers=signed.get("headers", {}))).status_code < 300
    assert (await api.post(f"/v1/uploads/{signed['id']}/complete")).status_code == 200
    upload_id: str = signed["id"]
    return upload_id


class TestRefusals:
    """The gateway's refusals (one worker path is enough: the local pool)."""

    @pytest.fixture
    def session_path(self) -> str:
        return "local-pool"

    async def test_recordings_and_sources_are_refused_where_they_cannot_serve(
        self, session_stack: SessionStack
    ) -> None:
        env, api = session_stack
        sid = await ended_session(env, api, "arm-ref", 2)
        async with httpx.AsyncClient(base_url=env["GPURELAY_URL"], timeout=30) as other:
            headers = {"Authorization": f"Bearer {await other_tenant_key(env)}"}
            assert (await other.get(f"/v1/sessions/{sid}/recording", headers=headers)).status_code == 404
            assert (await other.post(f"/v1/sessions/{sid}/replay", json={}, headers=headers)).status_code == 404

        running = (await post(api, "/v1/sessions", {"kind": "vlm"}))["id"]
        assert (await api.post(f"/v1/sessions/{running}/replay", json={})).status_code == 409
        refused = await api.post("/v1/sessions", json={"kind": "vlm", "source": {"session_id": running}})
        assert (refused.status_code, fields(refused)) == (422, [["body", "source", "session_id"]])
        picture = await upload(api, jpeg(1), "frame.jpg", "image/jpeg")
        refused = await api.post("/v1/sessions", json={"kind": "vlm", "source": {"upload_id": picture}})
        assert (refused.status_code, fields(refused)) == (422, [["body", "source", "upload_id"]])
        both = {"kind": "splat", "robot_id": "arm-ref", "source": {"session_id": sid}}
        assert (await api.post("/v1/sessions", json=both)).status_code == 422
        export = {"kind": "session_export", "params": {"session_id": "job_nothing", "format": "mcap"}}
        refused = await api.post("/v1/jobs", json=export)
        assert (refused.status_code, fields(refused)) == (422, [["body", "params", "session_id"]])
        replay = await post(api, f"/v1/sessions/{sid}/replay", {"params": {"frame_buffer": 0}}, status=422)
        assert replay["errors"][0]["loc"] == ["body", "params", "frame_buffer"]

        junk = io.BytesIO()
        with zipfile.ZipFile(junk, "w") as zipped:
            zipped.writestr("notes.txt", "not a dataset")
        source = {"upload_id": await upload(api, junk.getvalue(), "junk.zip", "application/zip")}
        fed = await post(api, "/v1/sessions", {"kind": "vlm", "source": source})
        frame = await api.post(
            f"/v1/sessions/{fed['id']}/frames", content=jpeg(2), headers={"Content-Type": "image/jpeg"}
        )
        assert frame.status_code == 409
        failed = await settled(env, fed["id"], timeout_s=60)
        assert failed.status == "failed"
        assert failed.error is not None
        assert failed.error.code == "invalid_dataset"
