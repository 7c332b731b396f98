"""Acceptance: pipelines, upload gating and the concurrency limit across replicas."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import streams
from contracts.api.uploads import UploadRecord, UploadStatus
from contracts.events.registry import EventType, make_event
from contracts.events.uploads import UploadCompletedPayload
from contracts.ids import tenant_key
from contracts.job_parts import JobStatus, StageStatus
from contracts.subjects import Namespace, Subjects
from services.common.storage import LocalStorage
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import (
    NERF,
    PATIENT_MISSES,
    POSE,
    EventLog,
    local_route,
    pipeline_route,
    submit,
    wait_record,
)

S = JobStatus


async def test_a_3_stage_pipeline_passes_artifacts_on_with_monotonic_progress(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    dispatcher = await start_dispatcher({"nerf": pipeline_route()})
    job = await submit(js, jobs_kv, subjects, NERF)
    record = await wait_record(jobs_kv, job, lambda r: r.terminal)
    assert record.status is S.SUCCEEDED
    assert [a.name for a in record.artifacts] == ["colmap/colmap.txt", "render/render.txt", "train/train.txt"]
    reports = record.result.pop("stages")
    assert record.result == {"stage": "render", "inputs": ["train/train.txt"]}  # every stage's, the last winning
    assert list(reports) == ["colmap", "train", "render"]
    assert all(s["seconds"] >= 0.3 and s["gpu_seconds"] == s["seconds"] for s in reports.values())
    assert all(s["cost_usd"] == pytest.approx(s["gpu_seconds"] / 1000, abs=1e-5) for s in reports.values())
    storage = dispatcher.storage
    assert isinstance(storage, LocalStorage)
    assert await storage.read_all(record.artifacts[2].key) == b"colmap/colmap.txt"  # train got colmap's output
    assert [(s.name, s.status) for s in record.stages] == [
        (n, StageStatus.SUCCEEDED) for n in ("colmap", "train", "render")
    ]
    fractions = [e.data["fraction"] for e in event_log.events[job] if e.type == "job.progress"]
    assert fractions == sorted(fractions)
    assert len(fractions) >= 6
    assert max(f for f in fractions if f < 0.2 + 1e-9) <= 0.2
    assert fractions[-1] == 1.0
    stages = [(e.data["name"], e.data["status"]) for e in event_log.events[job] if e.type == "job.stage"]
    assert stages[0] == ("colmap", "running")
    assert stages[-1] == ("render", "succeeded")


async def test_a_job_waits_for_its_upload_and_url_inputs_need_none(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
) -> None:
    await start_dispatcher({"pose": local_route("noop")})
    uploads = await js.key_value(namespace.bucket(streams.KV_UPLOADS))
    now = datetime.now(UTC)
    upload = UploadRecord(
        id="upl_1",
        tenant="acme",
        key="uploads/acme/upl_1/v.mp4",
        filename="v.mp4",
        content_type="video/mp4",
        size=10,
        created_at=now,
    )
    await uploads.create(tenant_key("acme", "upl_1"), upload.model_dump_json().encode())
    waiting = await submit(js, jobs_kv, subjects, {"kind": "pose", "inputs": {"video": {"upload_id": "upl_1"}}})
    by_url = await submit(js, jobs_kv, subjects, POSE)
    await wait_record(jobs_kv, by_url, lambda r: r.terminal)
    await event_log.wait(lambda: "job.created" in event_log.types(waiting))
    assert (await wait_record(jobs_kv, waiting, lambda r: True)).status is S.CREATED
    done = upload.model_copy(update={"status": UploadStatus.COMPLETED, "completed_at": now})
    await uploads.put(tenant_key("acme", "upl_1"), done.model_dump_json().encode())
    payload = UploadCompletedPayload(
        upload_id="upl_1", key=upload.key, filename="v.mp4", content_type="video/mp4", size=10
    )
    event = make_event(
        EventType.UPLOAD_COMPLETED,
        payload,
        tenant="acme",
        source="gateway",
        event_id="upload-completed-upl_1",
    )
    await js.publish(
        subjects.upload_completed("acme", "upl_1"), event.to_json_bytes(), headers={"Nats-Msg-Id": event.id}
    )
    record = await wait_record(jobs_kv, waiting, lambda r: r.terminal)
    assert record.status is S.SUCCEEDED


async def test_the_concurrency_limit_holds_across_replicas_and_queued_jobs_wait(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    routes = {"pose": local_route("sleeps", concurrency=2)}
    await start_dispatcher(routes, heartbeat_misses=PATIENT_MISSES)
    await start_dispatcher(routes, heartbeat_misses=PATIENT_MISSES)
    jobs = [await submit(js, jobs_kv, subjects, POSE) for _ in range(6)]
    await event_log.wait_ended(jobs, 30)
    spans = []
    for job in jobs:
        dispatched, ended = event_log.first(job, "job.dispatched"), event_log.first(job, "job.succeeded")
        assert dispatched is not None
        assert ended is not None
        spans.append((dispatched.time, ended.time))
    overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert 1 <= overlap <= 2
