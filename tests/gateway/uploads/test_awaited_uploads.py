"""An upload's completion tells the dispatcher whether a job can wait on it (issue 34).

A job or session accepted while its upload is pending marks the upload's record ``awaited`` before its
``job.created`` (``services/gateway/uploads/inputs.py``); the completion's ``Gpurelay-Upload-Awaited``
header carries the mark, and the dispatcher reads KV ``dispatcher_waits`` only for an awaited upload (a
message get and its reply less for every other). A mark and a complete racing each other both hold: the
complete writes over the mark, and a mark that finds the upload completed takes it as complete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from nats.js import JetStreamContext

from bench.harness.message_counter import MessageCounter, Tally
from bench.harness.waiting import wait_for
from contracts import streams
from contracts.api.uploads import UploadRecord, UploadStatus
from contracts.events.uploads import UPLOAD_AWAITED
from contracts.ids import tenant_key
from contracts.job_parts import JobStatus
from contracts.subjects import Namespace
from services.common.auth.apikeys import Principal
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.service import Dispatcher
from services.gateway.sessions.lru import Lru
from services.gateway.state import GatewayState
from services.gateway.uploads import inputs, routes
from tests.support.dispatcher import dispatcher_settings, local_route, wait_record
from tests.support.gateway import Gateway, Tenant, uploaded
from tests.support.lap import square_video

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def dispatcher(gateway: Gateway, nats_server: EmbeddedNats, namespace: Namespace) -> AsyncIterator[Dispatcher]:
    settings = dispatcher_settings(nats_server.url, namespace, gateway.settings.data_dir, url=gateway.url)
    running = Dispatcher(settings, routes={"pose": local_route("noop")})
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
def video(tmp_path: Path) -> bytes:
    return square_video(tmp_path / "lap.mp4", frames=8).read_bytes()


def waits_reads(tally: Tally, namespace: Namespace) -> int:
    """Reads of KV ``dispatcher_waits`` in ``tally`` (message gets or direct gets of its stream)."""
    bucket = f"KV_{namespace.bucket(streams.KV_DISPATCHER_WAITS)}"
    return sum(n for (kind, source), n in tally.sources.items() if kind.endswith(" get") and bucket in source)


async def uploads_state(js: JetStreamContext, namespace: Namespace) -> GatewayState:
    """What the mark and the complete use of a gateway's state, on the test's own connection (the served
    gateway's runs on its server's loop): KV ``uploads`` and the uploads' caches. As another gateway's."""
    uploads = await js.key_value(namespace.bucket(streams.KV_UPLOADS))
    kv = SimpleNamespace(uploads=uploads)
    return cast(GatewayState, SimpleNamespace(kv=kv, completed_uploads=Lru(8), pending_uploads=Lru(8)))


async def _record(state: GatewayState, upload_id: str) -> tuple[UploadRecord, int]:
    entry = await state.kv.uploads.get(tenant_key("acme", upload_id))
    return UploadRecord.model_validate_json(entry.value or b""), entry.revision or 0


async def _complete_and_settle(acme: Tenant, js: JetStreamContext, namespace: Namespace, upload_id: str) -> str:
    """Complete the upload and wait until the dispatcher has handled its completion; the header it had."""
    assert (await acme.http.post(f"/v1/uploads/{upload_id}/complete")).status_code == 200
    jobs = namespace.stream(streams.JOBS)
    msg = await js.get_last_msg(jobs, namespace.subject(f"uploads.acme.{upload_id}.completed"))

    async def handled() -> bool:
        floor = (await js.consumer_info(jobs, "dispatcher-uploads")).ack_floor
        return floor is not None and int(floor.stream_seq) >= int(msg.seq or 0)

    await wait_for(handled, timeout_s=30, what="the dispatcher's handling of the completion")
    return str((msg.headers or {}).get(UPLOAD_AWAITED, ""))


async def submit(acme: Tenant, upload_id: str) -> str:
    created = await acme.http.post("/v1/jobs", json={"kind": "pose", "inputs": {"video": {"upload_id": upload_id}}})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_only_an_awaited_uploads_completion_reads_the_waits_and_both_jobs_run(
    acme: Tenant,
    dispatcher: Dispatcher,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    js: JetStreamContext,
    video: bytes,
) -> None:
    state = await uploads_state(js, namespace)
    jobs_kv = await js.key_value(namespace.bucket(streams.KV_JOBS))
    early, late = await uploaded(acme, video), await uploaded(acme, video)
    waiting = await submit(acme, early)  # the upload is still pending: the job waits for it
    assert (await _record(state, early))[0].awaited is True
    assert (await _record(state, late))[0].awaited is False
    counter = MessageCounter()
    await counter.start(nats_server.url)
    try:
        async with counter.window() as awaited:
            assert await _complete_and_settle(acme, js, namespace, early) == "1"
        async with counter.window() as unawaited:
            assert await _complete_and_settle(acme, js, namespace, late) == "0"
    finally:
        await counter.stop()
    assert waits_reads(awaited, namespace) >= 1, awaited.breakdown(30)
    assert waits_reads(unawaited, namespace) == 0, unawaited.breakdown(30)
    after = await submit(acme, late)
    for job_id in (waiting, after):
        record = await wait_record(jobs_kv, job_id, lambda r: r.terminal, within_s=60)
        assert record.status is JobStatus.SUCCEEDED, record.error


async def pending_upload(
    acme: Tenant, js: JetStreamContext, namespace: Namespace, video: bytes
) -> tuple[GatewayState, str, UploadRecord, int]:
    """A pending upload, its record and revision as a complete or a mark reads them, and the state to use."""
    state = await uploads_state(js, namespace)
    upload_id = await uploaded(acme, video)
    return state, upload_id, *await _record(state, upload_id)


async def test_a_mark_between_a_completes_read_and_its_write_is_completed_over(
    acme: Tenant, js: JetStreamContext, namespace: Namespace, video: bytes
) -> None:
    state, upload_id, read_by_complete, revision = await pending_upload(acme, js, namespace, video)
    await submit(acme, upload_id)  # marks the record: the revision the complete read is gone
    principal = Principal(tenant="acme", key_id="test")
    done, fresh = await routes._mark_completed(state, principal, read_by_complete, revision, "etag-1", None)
    assert fresh
    stored, _ = await _record(state, upload_id)
    assert (stored.status, stored.awaited, stored.etag) == (UploadStatus.COMPLETED, True, "etag-1")
    assert stored == done


async def test_a_mark_that_finds_the_upload_completed_takes_it_as_complete(
    acme: Tenant, js: JetStreamContext, namespace: Namespace, video: bytes
) -> None:
    state, upload_id, read_by_submit, revision = await pending_upload(acme, js, namespace, video)
    assert (await acme.http.post(f"/v1/uploads/{upload_id}/complete")).status_code == 200
    found = await inputs._awaited(state, tenant_key("acme", upload_id), read_by_submit, revision)
    assert found is not None
    assert (found[0].status, found[0].awaited) == (UploadStatus.COMPLETED, False)
    assert (await _record(state, upload_id))[0] == found[0]  # nothing written over the completed record


async def test_a_record_the_gateway_kept_from_before_another_gateways_mark_is_completed_with_the_mark(
    acme: Tenant, js: JetStreamContext, namespace: Namespace, video: bytes
) -> None:
    # The served gateway created the upload and kept its pending record; another marks it (a job named it).
    elsewhere, upload_id, record, revision = await pending_upload(acme, js, namespace, video)
    assert await inputs._awaited(elsewhere, tenant_key("acme", upload_id), record, revision) is not None
    assert (await acme.http.post(f"/v1/uploads/{upload_id}/complete")).status_code == 200
    stored, _ = await _record(elsewhere, upload_id)
    assert (stored.status, stored.awaited) == (UploadStatus.COMPLETED, True)
    completed = namespace.subject(f"uploads.acme.{upload_id}.completed")
    event = await js.get_last_msg(namespace.stream(streams.JOBS), completed)
    assert (event.headers or {}).get(UPLOAD_AWAITED) == "1"  # a job waiting on it is told
