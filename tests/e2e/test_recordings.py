"""A session's recording through the whole embedded stack (echo workload, the real export job).

A session with frames, joint samples, a reset and a stop → its recording's manifest → ``session_export``
as ``lerobot``, ``mcap`` and ``rrd``, each read back by an independent reader (pyarrow and PyAV,
``mcap``, rerun-sdk) → the LeRobot zip uploaded as a new session's source → that session replayed:
every step has the same frames and the joint values that were posted (float32 once in the dataset),
and the replay stores ``comparison.json`` with both runs' figures.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from contracts.job_record import JobRecord
from tests.e2e.support import SessionStack, record_when, settled
from tests.support.export_readers import echo_and_export_stack, lerobot_rows, mcap_counts, rrd_rows, states
from tests.support.sessions import jpeg

pytestmark = pytest.mark.timeout(240)
T0 = 1_760_000_000.0
FPS = 15


def angles(i: int) -> list[float]:
    """Frame ``i``'s posted joint angles (radians; not representable exactly as float32)."""
    return [round(-1.1 + 0.0371 * i + 0.4137 * j, 7) for j in range(6)]


@pytest.fixture
async def recording_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SessionStack]:
    """The embedded stack: the echo workload on the session kinds, the real export on session_export."""
    async for stack in echo_and_export_stack(tmp_path, monkeypatch):
        yield stack


async def created(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await api.post(path, json=body)
    assert answer.status_code in (200, 201), answer.text
    out: dict[str, Any] = answer.json()
    return out


async def live_session(env: dict[str, str], api: httpx.AsyncClient) -> str:
    """8 frames with a joint sample each (a reset after the 4th), then a stop; the session id."""
    sid = (await created(api, "/v1/sessions", {"kind": "splat", "robot_id": "arm-rec"}))["id"]
    for i in range(8):
        ts = T0 + i / FPS
        sample = await api.post("/v1/robots/arm-rec/joints", json={"joint_angles": angles(i), "ts": ts})
        assert sample.status_code == 202, sample.text
        frame = await api.post(f"/v1/sessions/{sid}/frames", params={"ts": ts}, content=jpeg(i, (64, 48)),
                               headers={"Content-Type": "image/jpeg"})  # fmt: skip
        assert frame.status_code == 202, frame.text
        if i == 3:  # every frame before the reset taken, so the reset drops none
            await record_when(env, sid, lambda r: r.session is not None and r.session.last_result_seq >= 4)
            assert (await api.post(f"/v1/sessions/{sid}/reset")).status_code == 202
    await record_when(env, sid, lambda r: r.session is not None and r.session.last_result_seq >= 8)
    assert (await api.post(f"/v1/sessions/{sid}/stop")).status_code == 202
    assert (await settled(env, sid)).status == "succeeded"
    return sid


async def recording(api: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    answer = await api.get(f"/v1/sessions/{sid}/recording")
    assert answer.status_code == 200, answer.text
    manifest: dict[str, Any] = answer.json()
    return manifest


async def exported(
    env: dict[str, str], api: httpx.AsyncClient, sid: str, fmt: str, folder: Path
) -> tuple[Path, JobRecord]:
    job = await created(api, "/v1/jobs", {"kind": "session_export", "params": {"session_id": sid, "format": fmt}})
    record = await settled(env, job["id"], timeout_s=120)
    assert record.status == "succeeded", record.error
    (artifact,) = (await api.get(f"/v1/jobs/{job['id']}")).json()["artifacts"]
    async with httpx.AsyncClient(timeout=30) as storage:
        body = (await storage.get(artifact["url"])).content
    path = folder / artifact["name"]
    await asyncio.to_thread(path.write_bytes, body)
    return path, record


async def uploaded_zip(api: httpx.AsyncClient, path: Path) -> str:
    data = await asyncio.to_thread(path.read_bytes)
    signed = await created(
        api, "/v1/uploads", {"filename": path.name, "content_type": "application/zip", "size": len(data)}
    )
    async with httpx.AsyncClient(timeout=30) as storage:
        put = await storage.put(signed["url"], content=data, headers=signed.get("headers", {}))
    assert put.status_code < 300, put.text
    assert (await api.post(f"/v1/uploads/{signed['id']}/complete")).status_code == 200
    upload_id: str = signed["id"]
    return upload_id


def joints_of(manifest: dict[str, Any]) -> np.ndarray:
    return np.asarray([f["joints"]["angles"] for f in manifest["frames"]], dtype=np.float64)


async def test_record_export_import_and_replay(recording_stack: SessionStack, tmp_path: Path) -> None:
    env, api = recording_stack
    posted = np.asarray([angles(i) for i in range(8)], dtype=np.float64)
    sid = await live_session(env, api)

    manifest = await recording(api, sid)
    assert [f["seq"] for f in manifest["frames"]] == list(range(1, 9))
    assert [f["ts"] for f in manifest["frames"]] == [T0 + i / FPS for i in range(8)]
    assert np.array_equal(joints_of(manifest), posted)  # exactly as posted
    assert [c["action"] for c in manifest["controls"]] == ["reset", "stop"]
    assert [r["first_seq"] for r in manifest["results"]] == list(range(1, 9))
    assert [s["seq"] for s in manifest["snapshots"]] == [2, 4, 6, 8]  # the echo's, every 2 frames since a reset
    assert manifest["ended_at"] is not None

    zipped, record = await exported(env, api, sid, "lerobot", tmp_path)
    assert record.result is not None
    assert (record.result["frames"], record.result["episodes"]) == (8, 1)
    info, table, decoded = lerobot_rows(zipped, tmp_path / "dataset")
    assert (info["codebase_version"], info["fps"], info["total_frames"]) == ("v3.0", FPS, 8)
    assert table.num_rows == decoded == 8
    assert np.array_equal(states(table), posted.astype(np.float32))  # within float32: the dataset's type
    assert table["seq"].to_pylist() == list(range(1, 9))

    mcap, _ = await exported(env, api, sid, "mcap", tmp_path)
    counts = mcap_counts(mcap)
    assert (counts["/camera/main"], counts["/joints"], counts["/results"], counts["/control"]) == (8, 8, 8, 2)
    rrd, _ = await exported(env, api, sid, "rrd", tmp_path)
    rows = rrd_rows(rrd)
    assert rows["/camera/main"] == 8
    assert all(rows[f"/joints/{name}"] == 8 for name in manifest["joint_names"])

    source = {"upload_id": await uploaded_zip(api, zipped), "speed": "max"}
    imported = (await created(api, "/v1/sessions", {"kind": "vlm", "source": source}))["id"]
    assert (await settled(env, imported, timeout_s=60)).status == "succeeded"
    again = await recording(api, imported)
    assert [f["seq"] for f in again["frames"]] == list(range(1, 9))
    assert [f["ts"] for f in again["frames"]] == pytest.approx([T0 + i / FPS for i in range(8)], abs=1e-6)
    assert np.array_equal(joints_of(again).astype(np.float32), posted.astype(np.float32))
    assert [c["action"] for c in again["controls"]] == ["stop"]  # the feeder's, after the last frame

    replay = await created(api, f"/v1/sessions/{imported}/replay", {"params": {"frame_buffer": 3}, "speed": "max"})
    assert replay["spec"]["source"] == {"session_id": imported, "speed": "max"}
    assert (await settled(env, replay["id"], timeout_s=60)).status == "succeeded"
    replayed = await recording(api, replay["id"])
    assert replayed["replay_of"] == imported
    assert replayed["params"]["frame_buffer"] == 3
    assert [f["seq"] for f in replayed["frames"]] == list(range(1, 9))
    assert np.array_equal(joints_of(replayed), joints_of(again))  # the same values, as the source fed them
    job = (await api.get(f"/v1/jobs/{replay['id']}")).json()
    (artifact,) = [a for a in job["artifacts"] if a["name"] == "comparison.json"]
    async with httpx.AsyncClient(timeout=30) as storage:
        comparison = json.loads((await storage.get(artifact["url"])).content)
    assert comparison["kind"] == "vlm"
    assert (comparison["original"]["session_id"], comparison["replay"]["session_id"]) == (imported, replay["id"])
    assert (comparison["original"]["frames"], comparison["replay"]["frames"]) == (8, 8)
    assert (comparison["original"]["results"], comparison["replay"]["results"]) == (8, 8)
    assert [(c["chunk"], c["original"], c["replay"]) for c in comparison["chunks"]] == [
        (n, f"frame {n}", f"frame {n}") for n in range(1, 9)
    ]
