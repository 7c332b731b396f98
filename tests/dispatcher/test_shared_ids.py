"""The gateway and the dispatcher give one logical event the same id, so the log stores it once."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import streams
from contracts.event_ids import attempt_end_msg_id, attempt_event_id, created_event_id, worker_event_id
from contracts.events.jobs import JobRetryingPayload, JobSucceededPayload
from contracts.events.registry import EventType, make_event
from contracts.subjects import Namespace, Subjects, event_token
from services.common.nats.publish import publish_event
from services.dispatcher.job_events import JobEvents
from tests.support.dispatcher import read_record
from tests.support.gateway import Tenant, presign


async def test_the_sweepers_job_created_is_the_gateways_and_is_dropped(
    acme: Tenant, js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, subjects: Subjects
) -> None:
    upload_id = (await presign(acme, 10))["id"]  # pending: the job waits on it, nothing else publishes
    response = await acme.http.post("/v1/jobs", json={"kind": "pose", "inputs": {"video": {"upload_id": upload_id}}})
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    record = await read_record(jobs_kv, job_id)
    assert not await JobEvents(js, namespace).publish_created(record)  # a duplicate of the gateway's
    info = await js.stream_info(namespace.stream(streams.JOBS), subjects_filter=subjects.job_events("acme", job_id))
    assert {event_token(s): n for s, n in (info.state.subjects or {}).items()} == {"created": 1}
    msg = await js.get_last_msg(namespace.stream(streams.JOBS), subjects.stored_job_event("acme", job_id, "created"))
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == created_event_id(job_id)


async def test_an_attempt_its_worker_ended_first_is_not_given_up_again(
    acme: Tenant, js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, subjects: Subjects
) -> None:
    """The dispatcher's job.retrying of an attempt whose worker's job.succeeded is stored is a duplicate
    (one ``Nats-Msg-Id`` per attempt's end): not stored, and :meth:`JobEvents.publish` hands back the
    worker's ending, from which the attempt's outcome is taken."""
    upload_id = (await presign(acme, 10))["id"]  # pending: the job waits on it, nothing else publishes
    response = await acme.http.post("/v1/jobs", json={"kind": "pose", "inputs": {"video": {"upload_id": upload_id}}})
    job_id = response.json()["id"]
    record = await read_record(jobs_kv, job_id)
    worker_end = make_event(
        EventType.JOB_SUCCEEDED, JobSucceededPayload(), tenant="acme", source="worker/pose", job_id=job_id,
        kind="pose", attempt=1, event_id=worker_event_id(job_id, 1, "succeeded"),
    )  # fmt: skip
    await publish_event(js, subjects.job_event("acme", job_id, "succeeded"), worker_end)
    retrying = JobRetryingPayload(reason="worker_lost", next_attempt=2)
    own_id = attempt_event_id(job_id, 1, "retrying")
    stored = await JobEvents(js, namespace).publish(record, EventType.JOB_RETRYING, retrying, own_id, attempt=1)
    assert (stored.id, stored.type) == (worker_end.id, "job.succeeded")
    info = await js.stream_info(namespace.stream(streams.JOBS), subjects_filter=subjects.job_events("acme", job_id))
    assert subjects.job_event("acme", job_id, "retrying") not in (info.state.subjects or {})
    msg = await js.get_last_msg(namespace.stream(streams.JOBS), subjects.stored_job_event("acme", job_id, "succeeded"))
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == attempt_end_msg_id(job_id, 1)
