"""Live Gaussian splatting through the whole embedded stack: the real ``splat`` workload on the local pool.

The frames are synthetic ground truth: a scene of known Gaussians rendered from the wrist camera of
the shipped synthetic arm along a smooth joint trajectory. ``gpurelay dev``'s defaults pose them (the
synthetic arm's URDF and its ``camera_link``, 60° field of view), as the seed's clients send no
robot description.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import torch
from plyfile import PlyData

from contracts.job_record import JobRecord
from modal_workers.splat.camera import Camera, CameraRig, Intrinsics
from modal_workers.splat.kinematics import synthetic_arm_urdf
from modal_workers.splat.ply import read_ply
from modal_workers.splat.raster import rasterize
from modal_workers.splat.synth import arm_angles, render_frame, scene_gaussians
from modal_workers.splat.train import mse_to_psnr
from tests.e2e.support import SessionStack, download, record_when, settled
from tests.support.sessions import next_json, open_socket

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

FRAME_DT_S = 0.1
"""Trajectory time between two frames."""


def rig() -> CameraRig:
    """The camera ``gpurelay dev`` poses frames with: the synthetic arm's ``camera_link``."""
    return CameraRig.from_urdf(synthetic_arm_urdf(), "camera_link")


def camera(t: float, size: int) -> Camera:
    return Camera(Intrinsics.from_fov(size, size, 60.0), rig().camera_to_world(arm_angles(t)))


def encode(image: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def metric(name: str, done: Callable[[Any], bool]) -> Callable[[JobRecord], bool]:
    """A record condition on one of the worker's progress metrics."""
    return lambda record: name in record.progress.metrics and done(record.progress.metrics[name])


async def start(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    created = await api.post("/v1/sessions", json={"kind": "splat", **body})
    assert created.status_code == 201, created.text
    session: dict[str, Any] = created.json()
    return session


async def test_the_seed_routes_get_chunks_a_live_ply_reset_and_stop(splat_stack: SessionStack) -> None:
    env, api = splat_stack
    # A frame waits for its joint sample, which comes another way (TELEMETRY), up to the longest wait (5 s):
    # a loaded machine's lag left a second frame unposed at 500 ms and at 2 s in make test (frames_without_pose
    # 2 == 1). The buffer holds every frame sent, so a worker slowed by load drops none and both chunks come.
    params = {
        "steps_per_frame": 1, "max_gaussians": 1000, "joint_tolerance_ms": 2000, "joint_wait_ms": 5000,
        "snapshot_every_s": 0.5,
    }  # fmt: skip
    session = await start(api, params={**params, "frame_buffer": 128})
    sid, scene = session["id"], scene_gaussians()
    times = [i * FRAME_DT_S for i in range(124)]
    shots = [(encode(render_frame(scene, camera(t, 40)), ".jpg"), arm_angles(t)) for t in times]
    async with httpx.AsyncClient(base_url=session["urls"]["compat"], timeout=30) as seed:

        async def send(i: int, with_joints: bool = True) -> dict[str, Any]:
            jpeg, angles = shots[i]
            if with_joints:
                for _ in range(3):  # a 503 (NATS stalled on a loaded machine: a KV read timed out) says retry
                    joints = await seed.post("/update-joint-angles", json={"joint_angles": angles.tolist()})
                    if joints.status_code != 503:
                        break
                    await asyncio.sleep(float(joints.headers.get("retry-after", "1")))
                assert joints.json() == {"success": True, "joint_angles": angles.tolist()}
            frame = await seed.post("/upload-frame", files={"file": ("frame.jpg", jpeg, "image/jpeg")})
            assert frame.status_code == 200, frame.text
            await asyncio.sleep(1 / 40)  # a camera's pace: unpaced, a quick machine meets the 60 frames/s limit (429)
            body: dict[str, Any] = frame.json()
            return body

        assert (await send(0, with_joints=False))["frame_count"] == 1  # before the arm sends anything: no pose
        unposed = await record_when(env, sid, metric("frames_without_pose", lambda n: n == 1))
        assert unposed.progress.message is not None
        assert "frame 1 has no pose and no joint sample" in unposed.progress.message
        for i in range(1, 120):
            assert (await send(i))["frame_count"] == i + 1
        await record_when(env, sid, metric("frame_count", lambda n: n == 120), timeout_s=60)
        shown = await record_when(env, sid, metric("chunks", lambda n: n == 2), timeout_s=60)
        # The rest are posed (the message names the last unposed frame; joints_received tells lost from late)
        assert shown.progress.metrics["frames_without_pose"] == 1, (shown.progress.message, shown.progress.metrics)
        status = (await seed.get("/status")).json()
        assert (status["frame_count"], status["chunks_uploaded"]) == (120, 2)
        assert status["gaussian_count"] > 0
        assert 0 < status["progress"] <= 1
        ply = await seed.get("/get-ply")
        assert ply.status_code == 200
        assert PlyData.read(io.BytesIO(ply.content))["vertex"].count > 0

        assert (await seed.post("/reset")).json() == {"success": True}
        await record_when(env, sid, metric("resets", lambda n: n == 1))
        status = (await seed.get("/status")).json()
        assert (status["frame_count"], status["gaussian_count"], status["chunks_uploaded"]) == (0, 0, 2)
        assert read_ply((await seed.get("/get-ply")).content).count == 0  # the live PLY shows the cleared model
        for i in range(120, 124):
            assert (await send(i))["frame_count"] == i - 119
        await record_when(env, sid, metric("frame_count", lambda n: n == 4))
        stop = (await seed.post("/stop-training")).json()
    chunks = ["chunks/0001.ply", "chunks/0002.ply", "chunks/0003.ply"]  # numbering goes on after the reset
    assert stop == {"success": True, "chunks": chunks, "complete": True}
    record = await settled(env, sid)
    assert record.status == "succeeded"
    assert record.result is not None
    assert (record.result["chunks"], record.result["frame_count"]) == (chunks, 4)
    assert record.result["gaussian_count"] > 0
    artifacts = {a["name"]: a for a in (await api.get(f"/v1/jobs/{sid}")).json()["artifacts"]}
    assert set(artifacts) == {*chunks, "status.json"}
    status_file = json.loads(await download(artifacts["status.json"]))
    assert (status_file["chunks"], status_file["complete"], status_file["frame_count"]) == (chunks, True, 4)
    assert status_file["gaussian_count"] == record.result["gaussian_count"]
    assert read_ply(await download(artifacts["chunks/0003.ply"])).count == record.result["gaussian_count"]


SIZE, FRAMES, STEPS_PER_FRAME = 48, 24, 4


@pytest.mark.timeout(420)  # CPU training starved by the suite's load took over 150 s in CI (25 s alone)
async def test_joint_posed_frames_10_ms_off_reach_25_db_and_the_snapshot_renders_what_the_worker_saw(
    splat_stack: SessionStack,
) -> None:
    env, api = splat_stack
    params = {"steps_per_frame": STEPS_PER_FRAME, "frame_buffer": 32, "max_gaussians": 1000, "chunk_every": 12}
    session = await start(api, robot_id="arm-splat", params=params)
    sid, scene, t0 = session["id"], scene_gaussians(), time.time() - 60
    truths = [render_frame(scene, camera(i * FRAME_DT_S, SIZE)) for i in range(FRAMES)]
    offsets = [0.010 if i % 2 else -0.010 for i in range(FRAMES)]  # each joint sample 10 ms late or early
    started = time.perf_counter()
    async with open_socket(session["urls"]["stream"], env["GPURELAY_API_KEY"]) as ws:
        for i, (truth, off) in enumerate(zip(truths, offsets, strict=True)):
            t = i * FRAME_DT_S
            sample = {"joint_angles": arm_angles(t + off).tolist(), "ts": t0 + t + off}
            assert (await api.post("/v1/robots/arm-splat/joints", json=sample)).status_code == 202
            await ws.send(json.dumps({"type": "frame", "ts": t0 + t}))
            await ws.send(encode(truth, ".png"))
            ack = await next_json(ws, 30, skip=("event", "control"))
            assert (ack["type"], ack["seq"]) == ("ack", i + 1)
        steps = FRAMES * STEPS_PER_FRAME
        all_trained = metric("steps", lambda n: n >= steps)
        all_used = metric("frames_used", lambda n: n == FRAMES)  # steps can run ahead of the last frames
        trained = await record_when(env, sid, lambda r: all_trained(r) and all_used(r), timeout_s=360)
    elapsed = time.perf_counter() - started
    assert (await api.post(session["urls"]["stop"])).status_code == 202
    record = await settled(env, sid)
    assert record.status == "succeeded"
    assert record.result is not None
    assert trained.progress.metrics["frames_used"] == FRAMES
    assert trained.progress.metrics["frames_without_pose"] == 0
    model = read_ply((await api.get(f"/v1/sessions/{sid}/ply")).content)

    def render(cam: Camera) -> np.ndarray:
        k = cam.intrinsics
        with torch.no_grad():
            out = rasterize(
                model,
                torch.as_tensor(cam.viewmat, dtype=torch.float32),
                torch.as_tensor(k.matrix(), dtype=torch.float32),
                k.width,
                k.height,
                backend="tiles",
            )
        return out.image.clamp(0, 1).numpy()

    held_out = [0.05 + 0.4 * j for j in range(6)]  # between the training views
    errors = [np.mean((render(camera(t, SIZE)) - render_frame(scene, camera(t, SIZE)) / 255.0) ** 2) for t in held_out]
    held_out_psnr = float(np.mean([mse_to_psnr(float(e)) for e in errors]))
    print(f"splat session: held-out PSNR {held_out_psnr:.1f} dB, {steps} steps, {elapsed:.1f} s after the first frame")
    assert held_out_psnr >= 25.0
    # The final live PLY, reloaded here, renders the newest views as the worker's own model did.
    newest = range(FRAMES - 3, FRAMES)
    seen = [np.mean((render(camera(i * FRAME_DT_S + offsets[i], SIZE)) - truths[i] / 255.0) ** 2) for i in newest]
    assert mse_to_psnr(float(np.mean(seen))) == pytest.approx(record.result["psnr"], abs=0.01)
    artifacts = {a["name"]: a for a in (await api.get(f"/v1/jobs/{sid}")).json()["artifacts"]}
    status_file = json.loads(await download(artifacts["status.json"]))
    assert status_file["chunks"] == record.result["chunks"] == ["chunks/0001.ply", "chunks/0002.ply"]
    assert status_file["gaussian_count"] == record.result["gaussian_count"] == model.count
    assert (status_file["frame_count"], status_file["frames_used"], status_file["complete"]) == (FRAMES, FRAMES, True)
