"""lap_compare end to end: gateway, dispatcher and its local pool over real NATS, HTTP and storage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from contracts import streams
from contracts.job_record import JobStatus
from contracts.subjects import Namespace
from services.common.embedded_nats import EmbeddedNats
from services.dispatcher.service import Dispatcher
from tests.conftest import Gateway, Tenant
from tests.dispatcher.support import dispatcher_settings, local_route, wait_record
from tests.gateway.test_uploads import uploaded
from tests.workers.lap_support import frame_count, scrolling_video

pytestmark = pytest.mark.timeout(90)


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
    assert sorted(artifacts) == ["manifest.json", "metrics.json", "overlay.mp4"]
    async with httpx.AsyncClient(timeout=30) as http:
        for artifact in artifacts.values():
            response = await http.get(artifact["url"])
            assert response.status_code == 200, artifact
            assert len(response.content) == artifact["size"]
            assert hashlib.sha256(response.content).hexdigest() == artifact["sha256"]
            if artifact["name"] == "overlay.mp4":
                (tmp_path / "overlay.mp4").write_bytes(response.content)
    assert frame_count(tmp_path / "overlay.mp4") == 36
