"""Workloads end to end: gateway, dispatcher and its local pool over real NATS, HTTP and storage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from contracts import streams
from contracts.job_parts import JobStatus
from contracts.route_table import RetryPolicy
from contracts.subjects import Namespace
from modal_workers.pose.synth import write_video
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.service import Dispatcher
from tests.support.dispatcher import dispatcher_settings, local_route, wait_record
from tests.support.gateway import Gateway, Tenant, uploaded
from tests.support.lap import frame_count, scrolling_video

pytestmark = pytest.mark.timeout(150)


async def test_an_uploaded_lap_is_analysed_by_the_local_pool_and_its_artifacts_download(
    gateway: Gateway,
    acme: Tenant,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    js: JetStreamContext,
    tmp_path: Path,
) -> None:
    settings = dispatcher_settings(
        nats_server.url, namespace, gateway.settings.data_dir, url=gateway.url, local_pool_size=1
    )
    route = local_route("lap_compare", local="modal_workers.lap_compare:run", timeout_s=60.0)
    dispatcher = Dispatcher(settings, routes={"lap_compare": route})
    await dispatcher.start()
    try:
        video = scrolling_video(tmp_path / "lap.mp4", [3.0 * k for k in range(36)])
        upload_id = await uploaded(acme, video.read_bytes())
        assert (await acme.http.post(f"/v1/uploads/{upload_id}/complete")).status_code == 200
        body = {
            "kind": "lap_compare",
            "inputs": {"video": {"upload_id": upload_id}},
            "params": {"downscale_width": 160},
        }
        created = await acme.http.post("/v1/jobs", json=body)
        assert created.status_code in (200, 201, 202), created.text
        job_id = created.json()["id"]
        jobs = await js.key_value(namespace.bucket(streams.KV_JOBS))
        record = await wait_record(jobs, job_id, lambda r: r.terminal, within_s=60)
        assert record.status is JobStatus.SUCCEEDED, record.error
    finally:
        await dispatcher.stop()
    job = (await acme.http.get(f"/v1/jobs/{job_id}")).json()
    assert job["result"]["frames"] == 36
    artifacts = {a["name"]: a for a in job["artifacts"]}
    assert sorted(artifacts) == ["manifest.json", "metrics.json", "overlay.mp4", "overlay.webm"]
    async with httpx.AsyncClient(timeout=30) as http:
        for artifact in artifacts.values():
            response = await http.get(artifact["url"])
            assert response.status_code == 200, artifact
            assert len(response.content) == artifact["size"]
            assert hashlib.sha256(response.content).hexdigest() == artifact["sha256"]
            if artifact["name"] == "overlay.mp4":
                (tmp_path / "overlay.mp4").write_bytes(response.content)
    assert frame_count(tmp_path / "overlay.mp4") == 36


async def test_a_pose_job_that_names_no_model_runs_the_deployment_default(
    gateway: Gateway,
    acme: Tenant,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    js: JetStreamContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``GPURELAY_POSE_MODEL`` on the workers applies to a job that went through the whole stack.

    The pool's processes are spawned by the dispatcher, so they see the variable set here. The
    job's spec is stored and forwarded as JSON with every field written out; the default weights
    must still be the deployment's, not a value the contract filled in.
    """
    monkeypatch.setenv("GPURELAY_POSE_MODEL", "yolo26n-pose.yaml")
    monkeypatch.setenv("GPURELAY_MODEL_DIR", str(tmp_path / "no-baked-models"))
    # Heartbeats a loaded machine keeps up with while the worker imports torch (the tests' 1.2 s may not).
    settings = dispatcher_settings(
        nats_server.url, namespace, gateway.settings.data_dir, url=gateway.url, local_pool_size=1,
        heartbeat_interval_s=1.0, heartbeat_misses=10,
    )  # fmt: skip
    route = local_route("pose", local="modal_workers.pose:run", timeout_s=80.0, retries=RetryPolicy(max_attempts=1))
    dispatcher = Dispatcher(settings, routes={"pose": route})
    await dispatcher.start()
    try:
        video = write_video(tmp_path / "match.mp4", frames=8, width=160, height=128)
        upload_id = await uploaded(acme, video.read_bytes())
        assert (await acme.http.post(f"/v1/uploads/{upload_id}/complete")).status_code == 200
        body = {"kind": "pose", "inputs": {"video": {"upload_id": upload_id}}, "params": {"imgsz": 128}}
        created = await acme.http.post("/v1/jobs", json=body)
        assert created.status_code in (200, 201, 202), created.text
        job_id = created.json()["id"]
        jobs = await js.key_value(namespace.bucket(streams.KV_JOBS))
        record = await wait_record(jobs, job_id, lambda r: r.terminal, within_s=100)
        assert record.status is JobStatus.SUCCEEDED, record.error
    finally:
        await dispatcher.stop()
    job = (await acme.http.get(f"/v1/jobs/{job_id}")).json()
    assert job["spec"]["params"].get("model") is None  # the job named none
    manifest_url = next(a["url"] for a in job["artifacts"] if a["name"] == "manifest.json")
    async with httpx.AsyncClient(timeout=30) as http:
        manifest = (await http.get(manifest_url)).json()
    assert manifest["model"]["weights"] == "yolo26n-pose.yaml"
    assert job["result"]["processedFrames"] == 8
