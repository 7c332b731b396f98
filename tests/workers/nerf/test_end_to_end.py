"""A nerf job end to end: gateway, dispatcher and its local pool, the four stages; its training killed
after a checkpoint, the retry resumes from it."""

from __future__ import annotations

import io
import os
import signal
import zipfile

import httpx
import pytest
from nats.js import JetStreamContext

from bench.harness.nerf_scene import View, scene_zip
from contracts import streams
from contracts.envelope import EventEnvelope
from contracts.job_parts import JobStatus
from contracts.route_table import RetryPolicy
from contracts.subjects import Namespace
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.service import Dispatcher
from tests.support.dispatcher import EventLog, dispatcher_settings, wait_record
from tests.support.gateway import Gateway, Tenant
from tests.support.nerf_jobs import nerf_route, submit_nerf

pytestmark = pytest.mark.timeout(300)
PARAMS = {"iterations": 40, "downscale": 8, "frames": 4, "batch_size": 2, "render_width": 32, "render_height": 24}


def _logs(events: list[EventEnvelope], attempt: int) -> list[str]:
    return [e.data["message"] for e in events if e.type == "job.log" and e.attempt == attempt]


def _train_iterations(events: list[EventEnvelope], attempt: int) -> list[int]:
    return [
        e.data["metrics"]["iteration"]
        for e in events
        if e.type == "job.progress" and e.attempt == attempt and e.data["stage"] == "train" and e.data["metrics"]
    ]


async def test_a_nerf_job_runs_through_the_platform_and_a_killed_training_resumes_from_its_checkpoint(
    gateway: Gateway,
    acme: Tenant,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    js: JetStreamContext,
    nerf_views: tuple[list[View], list[bytes]],
) -> None:
    env = {"GPURELAY_NERF_CHECKPOINT_EVERY": "10", "GPURELAY_NERF_CPU_THREADS": "1"}
    settings = dispatcher_settings(
        nats_server.url, namespace, gateway.settings.data_dir, url=gateway.url, local_pool_size=1,
        local_worker_env=env, heartbeat_interval_s=1.0, heartbeat_misses=10,
    )  # fmt: skip  # heartbeats as tolerant as a loaded machine needs: only the SIGKILL may lose the worker
    retries = RetryPolicy(max_attempts=2, backoff_initial_s=0.05, backoff_max_s=0.1)
    dispatcher = Dispatcher(settings, routes={"nerf": nerf_route(retries=retries)})
    log = await EventLog().start(js, namespace)
    await dispatcher.start()
    try:
        job = await submit_nerf(acme, scene_zip(nerf_views[1]), PARAMS)
        checkpointed = lambda: any(m.startswith("checkpoint at") for m in _logs(log.events[job], 1))  # noqa: E731
        await log.wait(lambda: checkpointed() or log.ended(job) is not None, within_s=200)
        assert checkpointed(), [
            (e.type, e.attempt, e.data) for e in log.events[job] if e.type in ("job.log", "job.failed")
        ]
        started = [e for e in log.events[job] if e.type == "job.started" and e.attempt == 1]
        os.kill(int(started[-1].data["worker"].removeprefix("local-")), signal.SIGKILL)  # the train stage's worker
        kv = await js.key_value(namespace.bucket(streams.KV_JOBS))
        record = await wait_record(kv, job, lambda r: r.terminal, within_s=200)
    finally:
        await dispatcher.stop()
        await log.stop()
    assert record.status is JobStatus.SUCCEEDED, record.error
    events = log.events[job]
    retrying = next(e for e in events if e.type == "job.retrying")
    assert (record.attempt, retrying.data["reason"]) == (2, "worker_lost")
    result = record.result
    assert result["resumed_from"] >= 10
    assert f"resumed from iteration {result['resumed_from']}" in _logs(events, 2)
    assert min(_train_iterations(events, 2)) > result["resumed_from"]  # the counter went on from the checkpoint
    assert "reusing the camera poses of an earlier attempt" in _logs(events, 2)
    assert (result["registered_images"], result["frames_rendered"], result["iterations"]) == (16, 4, 40)
    assert result["psnr"] > result["psnr_initial"]
    stages = result["stages"]
    assert list(stages) == ["check", "colmap", "train", "render"]
    assert stages["check"]["gpu_seconds"] == 0.0
    assert all(
        s["seconds"] > 0 and s["cost_usd"] == pytest.approx(s["gpu_seconds"] / 1000, abs=1e-5) for s in stages.values()
    )
    job_view = (await acme.http.get(f"/v1/jobs/{job}")).json()
    artifacts = {a["name"]: a for a in job_view["artifacts"]}
    assert sorted(artifacts) == [
        "colmap/sparse.zip", "colmap/transforms.json", "render/frames_0001.zip", "render/frames_0002.zip",
        "render/preview.mp4", "render/preview.webm", "train/model.pt",
    ]  # fmt: skip
    async with httpx.AsyncClient(timeout=30) as http:
        frames = (await http.get(artifacts["render/frames_0002.zip"]["url"])).content
    with zipfile.ZipFile(io.BytesIO(frames)) as archive:
        assert archive.namelist() == ["frame_00003.png", "frame_00004.png"]
