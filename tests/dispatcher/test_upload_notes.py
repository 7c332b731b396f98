"""Upload gating writes a wait note only for an upload not complete yet, and deletes it on release."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts import streams
from contracts.api.uploads import UploadRecord, UploadStatus
from contracts.envelope import utc_now
from contracts.events.registry import EventType, job_created_event, make_event
from contracts.events.uploads import UploadCompletedPayload
from contracts.ids import new_id, tenant_key
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.subjects import Namespace, Subjects
from services.common.nats.kv import kv_entries
from services.common.nats.publish import publish_event
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import local_route, submit, wait_record


def _upload(upload_id: str, status: UploadStatus) -> UploadRecord:
    now = datetime.now(UTC)
    return UploadRecord(
        id=upload_id, tenant="acme", key=f"uploads/acme/{upload_id}/v.mp4", filename="v.mp4",
        content_type="video/mp4", size=10, created_at=now, status=status,
        completed_at=now if status is UploadStatus.COMPLETED else None,
    )  # fmt: skip


async def test_a_complete_upload_needs_no_note_and_a_waited_ones_note_goes_on_release(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, namespace: Namespace
) -> None:
    await start_dispatcher({"pose": local_route("noop")})
    uploads = await js.key_value(namespace.bucket(streams.KV_UPLOADS))
    waits = await js.key_value(namespace.bucket(streams.KV_DISPATCHER_WAITS))
    writes_before = (await js.stream_info(f"KV_{namespace.bucket(streams.KV_DISPATCHER_WAITS)}")).state.last_seq
    await uploads.create(
        tenant_key("acme", "upl_done"), _upload("upl_done", UploadStatus.COMPLETED).model_dump_json().encode()
    )
    ready = await submit(js, jobs_kv, subjects, {"kind": "pose", "inputs": {"video": {"upload_id": "upl_done"}}})
    assert (await wait_record(jobs_kv, ready, lambda r: r.terminal)).status.value == "succeeded"
    info = await js.stream_info(f"KV_{namespace.bucket(streams.KV_DISPATCHER_WAITS)}")
    assert info.state.last_seq == writes_before  # no note was written for a job whose upload was complete

    pending = _upload("upl_late", UploadStatus.PENDING)
    await uploads.create(tenant_key("acme", "upl_late"), pending.model_dump_json().encode())
    waiting = await submit(js, jobs_kv, subjects, {"kind": "pose", "inputs": {"video": {"upload_id": "upl_late"}}})
    await wait_record(jobs_kv, waiting, lambda r: True)

    async def noted() -> bool:
        return bool(await kv_entries(waits, "acme.upl_late.*", meta_only=True))

    await wait_for(noted, timeout_s=30, what="the job's wait note")
    notes = [e.key for e in await kv_entries(waits, "acme.upl_late.*", meta_only=True)]
    assert notes == [f"acme.upl_late.{waiting}"]
    done = _upload("upl_late", UploadStatus.COMPLETED)
    await uploads.put(tenant_key("acme", "upl_late"), done.model_dump_json().encode())
    payload = UploadCompletedPayload(
        upload_id="upl_late", key=done.key, filename="v.mp4", content_type="video/mp4", size=10
    )
    event = make_event(EventType.UPLOAD_COMPLETED, payload, tenant="acme", source="gateway", event_id="uc-upl_late")
    await js.publish(
        subjects.upload_completed("acme", "upl_late"), event.to_json_bytes(), headers={"Nats-Msg-Id": event.id}
    )
    assert (await wait_record(jobs_kv, waiting, lambda r: r.terminal)).status.value == "succeeded"
    assert await kv_entries(waits, "acme.upl_late.*", meta_only=True) == []  # deleted when the job was released


async def test_uploads_the_gateway_found_complete_are_not_read_again(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, namespace: Namespace
) -> None:
    """``job.created`` carries the sizes of the uploads the gateway found complete: the dispatcher queues
    the job on them without reading KV ``uploads`` (a message get and its reply per upload, issue 34).
    Here the upload is in no bucket at all, so a read would find nothing and the job would wait."""
    await start_dispatcher({"pose": local_route("noop")})
    spec = parse_job_spec({"kind": "pose", "inputs": {"video": {"upload_id": "upl_known"}}})
    record = JobRecord.new(new_id("job"), "acme", spec, utc_now())
    await jobs_kv.create(tenant_key("acme", record.id), record.model_dump_json().encode())
    event = job_created_event(record, upload_sizes={"upl_known": 1234})
    await publish_event(js, subjects.job_event("acme", record.id, "created"), event)
    assert (await wait_record(jobs_kv, record.id, lambda r: r.terminal)).status.value == "succeeded"

    unknown = await submit(js, jobs_kv, subjects, {"kind": "pose", "inputs": {"video": {"upload_id": "upl_gone"}}})
    waits = await js.key_value(namespace.bucket(streams.KV_DISPATCHER_WAITS))

    async def noted() -> bool:
        return bool(await kv_entries(waits, "acme.upl_gone.*", meta_only=True))

    await wait_for(noted, timeout_s=30, what="the wait note of a job whose upload was not said complete")
    assert not (await wait_record(jobs_kv, unknown, lambda r: True)).terminal
