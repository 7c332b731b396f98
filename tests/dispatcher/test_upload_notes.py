"""Upload gating writes a wait note only for an upload not complete yet, and deletes it on release."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts import streams
from contracts.api.uploads import UploadRecord, UploadStatus
from contracts.events.registry import EventType, make_event
from contracts.events.uploads import UploadCompletedPayload
from contracts.ids import tenant_key
from contracts.subjects import Namespace, Subjects
from services.common.nats.kv import kv_entries
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
