"""A splat session replayed against other params with the real ``splat`` workload (CPU): the comparison's figures.

The original session trains on 12 synthetic frames posed from the synthetic arm's joints; its replay
holds every 4th frame out of training (``holdout_every``). ``comparison.json`` then scores both runs'
last snapshots on those held-out frames (PSNR), and gives their Gaussian counts, frames/s and time to
the first snapshot; the replay's PSNR is checked against a render of its own final PLY here.
"""

from __future__ import annotations

import json
import time
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from modal_workers.splat.camera import Camera, CameraRig, Intrinsics
from modal_workers.splat.kinematics import synthetic_arm_urdf
from modal_workers.splat.model import GaussianModel
from modal_workers.splat.ply import read_ply
from modal_workers.splat.synth import arm_angles, render_frame, scene_gaussians
from modal_workers.splat.train import SplatConfig, SplatTrainer, mse_to_psnr
from tests.e2e.support import SessionStack, download, record_when, settled

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
SIZE, FRAMES, STEPS_PER_FRAME, DT = 48, 12, 6, 0.1


def camera(t: float) -> Camera:
    rig = CameraRig.from_urdf(synthetic_arm_urdf(), "camera_link")
    return Camera(Intrinsics.from_fov(SIZE, SIZE, 60.0), rig.camera_to_world(arm_angles(t)))


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


async def created(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await api.post(path, json=body)
    assert answer.status_code == 201, answer.text
    out: dict[str, Any] = answer.json()
    return out


async def test_a_replay_holding_frames_out_is_scored_on_them_against_the_original(splat_stack: SessionStack) -> None:
    env, api = splat_stack
    params = {"steps_per_frame": STEPS_PER_FRAME, "frame_buffer": 32, "max_gaussians": 1000, "snapshot_every_s": 0.2}
    session = await created(api, "/v1/sessions", {"kind": "splat", "robot_id": "arm-cmp", "params": params})
    sid, scene, t0 = session["id"], scene_gaussians(), time.time() - 60
    truths = [render_frame(scene, camera(i * DT)) for i in range(FRAMES)]
    for i, truth in enumerate(truths):
        sample = {"joint_angles": arm_angles(i * DT).tolist(), "ts": t0 + i * DT}
        assert (await api.post("/v1/robots/arm-cmp/joints", json=sample)).status_code == 202
        frame = await api.post(f"/v1/sessions/{sid}/frames", params={"ts": t0 + i * DT}, content=png(truth),
                               headers={"Content-Type": "image/png"})  # fmt: skip
        assert frame.status_code == 202, frame.text
    steps = FRAMES * STEPS_PER_FRAME
    await record_when(env, sid, lambda r: r.progress.metrics.get("steps", 0) >= steps, timeout_s=150)
    assert (await api.post(session["urls"]["stop"])).status_code == 202
    assert (await settled(env, sid)).status == "succeeded"

    body = {"params": {"holdout_every": 4}, "speed": "max"}
    replay = await created(api, f"/v1/sessions/{sid}/replay", body)
    record = await settled(env, replay["id"], timeout_s=150)
    assert record.status == "succeeded", record.error
    assert record.result is not None
    assert (record.result["frame_count"], record.result["frames_held_out"]) == (FRAMES, 3)
    artifacts = {a["name"]: a for a in (await api.get(f"/v1/jobs/{replay['id']}")).json()["artifacts"]}
    comparison = json.loads(await download(artifacts["comparison.json"]))
    assert (comparison["kind"], comparison["eval_seqs"], comparison["held_out"]) == ("splat", [4, 8, 12], True)
    original, replayed = comparison["original"], comparison["replay"]
    assert (original["frames"], replayed["frames"]) == (FRAMES, FRAMES)
    assert replayed["params"]["holdout_every"] == 4
    for run in (original, replayed):
        assert run["psnr"] is not None
        assert run["gaussians"] > 0
        assert run["frames_per_s"] > 0
        assert run["time_to_first_snapshot_s"] >= 0
    final = read_ply((await api.get(f"/v1/sessions/{replay['id']}/ply")).content)
    assert replayed["gaussians"] == final.count
    trainer = SplatTrainer(SplatConfig(backend="tiles", device="cpu"))
    trainer.model = GaussianModel(final, trainer.config.lrs)
    errors = [np.mean((trainer.render(camera(i * DT)) - truths[i] / 255.0) ** 2) for i in (3, 7, 11)]
    assert replayed["psnr"] == pytest.approx(mse_to_psnr(float(np.mean(errors))), abs=0.05)
