"""The uploads' completions (``dispatcher-uploads``) are pulled like every other dispatcher consumer.

A pull answered 503 (its consumer gone, or its server cut off from JetStream) waits before the next one
and makes the consumer again; a pull open when the consumer is deleted ends on the deletion's advisory.
FastStream's pull loop, which read this consumer before, swallowed that
503 and asked again at once: with the consumer deleted, a dispatcher sent thousands of pull requests a
second for as long as it ran, and a job waiting on an upload was never released.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts import streams
from contracts.api.uploads import UploadRecord, UploadStatus
from contracts.events.registry import EventType, make_event
from contracts.events.uploads import UploadCompletedPayload
from contracts.ids import tenant_key
from contracts.streams import Declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.connection import cancel_and_wait
from services.common.nats.kv import kv_entries
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.pull_loop import pull_one_at_a_time
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import local_route, submit, wait_record

QUIET_S = 3.0
MOST_PULLS = 6
"""Pull requests a loop whose consumer is gone, and cannot be made again, sends in :data:`QUIET_S`: one
after each refusal's pause (a second). FastStream's loop sent over 15,000 in 3 s once its first pull expired."""


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """The session's kind of server, with its monitoring port (``/varz`` counts what clients send)."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"), sync_interval="2m", monitor_port=0)
    server.start()
    yield server
    server.stop()


async def _received(server: EmbeddedNats) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(f"{server.monitor_url}/varz")).json()["in_msgs"])


def _upload(status: UploadStatus) -> UploadRecord:
    now = datetime.now(UTC)
    return UploadRecord(
        id="upl_1", tenant="acme", key="uploads/acme/upl_1/v.mp4", filename="v.mp4", content_type="video/mp4",
        size=10, created_at=now, status=status, completed_at=now if status is UploadStatus.COMPLETED else None,
    )  # fmt: skip


async def test_a_deleted_uploads_consumer_is_made_again_and_releases_the_job_waiting_on_its_upload(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, namespace: Namespace
) -> None:
    """On FastStream's loop the job stayed ``created`` for good (the consumer was never made again); on a
    loop that waited for its open pull to expire, for 35 s."""
    await start_dispatcher({"pose": local_route("noop")})
    jobs = namespace.stream(streams.JOBS)

    async def pulling() -> bool:  # its long pull open: the server may never end it (no 409 on a delete)
        return bool((await js.consumer_info(jobs, "dispatcher-uploads")).num_waiting)

    await wait_for(pulling, timeout_s=30, what="the uploads' open pull")
    await js.delete_consumer(jobs, "dispatcher-uploads")
    uploads = await js.key_value(namespace.bucket(streams.KV_UPLOADS))
    waits = await js.key_value(namespace.bucket(streams.KV_DISPATCHER_WAITS))
    await uploads.create(tenant_key("acme", "upl_1"), _upload(UploadStatus.PENDING).model_dump_json().encode())
    waiting = await submit(js, jobs_kv, subjects, {"kind": "pose", "inputs": {"video": {"upload_id": "upl_1"}}})

    async def noted() -> bool:
        return bool(await kv_entries(waits, "acme.upl_1.*", meta_only=True))

    await wait_for(noted, timeout_s=30, what="the job's wait note")
    done = _upload(UploadStatus.COMPLETED)
    await uploads.put(tenant_key("acme", "upl_1"), done.model_dump_json().encode())
    payload = UploadCompletedPayload(
        upload_id="upl_1", key=done.key, filename="v.mp4", content_type="video/mp4", size=10
    )
    event = make_event(EventType.UPLOAD_COMPLETED, payload, tenant="acme", source="gateway", event_id="uc-upl_1")
    subject = subjects.upload_completed("acme", "upl_1")
    await js.publish(subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.id})
    assert (await wait_record(jobs_kv, waiting, lambda r: r.terminal, within_s=30)).status.value == "succeeded"
    assert (await js.consumer_info(jobs, "dispatcher-uploads")).config.filter_subject == namespace.subject("uploads.>")


async def test_a_pull_loop_whose_consumer_is_gone_pauses_between_pulls_and_tells_its_watch(
    nats_server: EmbeddedNats, js: JetStreamContext, declared: Declarations, namespace: Namespace
) -> None:
    """The loop's bound, whatever reads through it: a consumer that cannot be made again (here: every try
    refused) costs a pull a second, and each refusal tells the watch (it may move the connection)."""
    jobs = namespace.stream(streams.JOBS)
    psub = await js.pull_subscribe(namespace.subject("uploads.>"), durable="gone", stream=jobs)
    await js.delete_consumer(jobs, "gone")
    told, remakes = [], []

    async def remake() -> JetStreamContext.PullSubscription:
        remakes.append(1)
        raise ServiceUnavailableError

    async def handle(msg: Msg) -> None:
        raise AssertionError(f"nothing to deliver, got {msg.subject}")

    loop = asyncio.create_task(pull_one_at_a_time(psub, "gone", handle, remake, lambda: told.append(1)))
    try:
        before = await _received(nats_server)
        await asyncio.sleep(QUIET_S)
        sent = await _received(nats_server) - before
    finally:
        await cancel_and_wait([loop])
    assert sent <= MOST_PULLS, f"{sent} messages in {QUIET_S} s"
    assert len(told) >= 2
    assert len(told) - 1 <= len(remakes) <= len(told)  # a remake after each refusal's pause


async def test_a_remade_uploads_consumer_starts_after_the_last_completion_settled_not_at_the_first(
    start_dispatcher: StartDispatcher, js: JetStreamContext, subjects: Subjects, namespace: Namespace
) -> None:
    """Made again from JOBS' first event, it delivered every upload completion the stream held again,
    one at a time (``max_ack_pending`` 1), ahead of the new ones: counted, not timed."""
    await start_dispatcher({"pose": local_route("noop")})
    jobs = namespace.stream(streams.JOBS)

    async def complete(upload_id: str) -> int:
        payload = UploadCompletedPayload(
            upload_id=upload_id, key=f"uploads/acme/{upload_id}/v.mp4", filename="v.mp4", content_type="video/mp4",
            size=10,
        )  # fmt: skip
        event = make_event(EventType.UPLOAD_COMPLETED, payload, tenant="acme", source="gateway", event_id=upload_id)
        ack = await js.publish(subjects.upload_completed("acme", upload_id), event.to_json_bytes())
        return int(ack.seq)

    async def settled(seq: int) -> bool:
        return (await js.consumer_info(jobs, "dispatcher-uploads")).ack_floor.stream_seq >= seq

    for upload_id in ("upl_a", "upl_b"):
        last = await complete(upload_id)
    await wait_for(lambda: settled(last), timeout_s=30, what="both completions settled")
    await js.delete_consumer(jobs, "dispatcher-uploads")

    async def remade() -> bool:
        try:
            await js.consumer_info(jobs, "dispatcher-uploads")
        except NotFoundError:
            return False
        return True

    await wait_for(remade, timeout_s=30, what="the consumer made again")
    config = (await js.consumer_info(jobs, "dispatcher-uploads")).config
    assert (config.deliver_policy, config.opt_start_seq) == (DeliverPolicy.BY_START_SEQUENCE, last + 1)
    newest = await complete("upl_c")
    await wait_for(lambda: settled(newest), timeout_s=30, what="the new completion settled")
    info = await js.consumer_info(jobs, "dispatcher-uploads")
    assert info.delivered.consumer_seq == 1  # the new one only (from the first: all three)
