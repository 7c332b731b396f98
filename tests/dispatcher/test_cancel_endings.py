"""A cancel is one of an attempt's endings: a job ends once, however a cancel and a run's end race.

``job.canceled`` is published with the ``Nats-Msg-Id`` of the attempt it ends (the one running, or
the one queued that will not run), so a worker's ending stored first wins and one stored after is a
duplicate; and it is fenced on its own subject, so two cancels (the fold's, a holder's) store one.
Before, a cancel during a run had the job's own id: a worker ending as the cancel came stored a second
terminal event (two webhooks, an SSE stream ending twice).
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.kv import KeyValue

from contracts.event_ids import worker_event_id
from contracts.events.jobs import JobCanceledPayload, JobFailedPayload, JobSucceededPayload
from contracts.events.registry import TERMINAL_JOB_EVENTS, EventType, make_event
from contracts.job_parts import JobError
from contracts.job_record import JobRecord
from contracts.subjects import Namespace, Subjects
from services.common.nats.publish import fence_headers, publish_event
from services.dispatcher.job_events import JobEvents
from tests.support.attempts import dispatched
from tests.support.dispatcher import read_record
from tests.support.gateway import Tenant, presign, stored

RUNNING = JobCanceledPayload(reason="canceled while it ran")
QUEUED = JobCanceledPayload(reason="canceled before it ran")


async def _job(acme: Tenant, jobs_kv: KeyValue) -> JobRecord:
    """A job that waits on an upload (no dispatcher runs here: only the test publishes its events)."""
    upload_id = (await presign(acme, 10))["id"]
    response = await acme.http.post("/v1/jobs", json={"kind": "pose", "inputs": {"video": {"upload_id": upload_id}}})
    assert response.status_code == 201, response.text
    return await read_record(jobs_kv, response.json()["id"])


async def _worker_ends(
    js: JetStreamContext, subjects: Subjects, job_id: str, fence: int, failed: bool = False
) -> PubAck:
    """Attempt 1's worker ends it as the local pool's does (its id, its attempt's ``Nats-Msg-Id``, fenced
    by its ``job.dispatched``)."""
    type_, payload, name = (EventType.JOB_SUCCEEDED, JobSucceededPayload(), "succeeded")
    if failed:
        error = JobError(code="bad_input", message="the worker gave up")
        type_, payload, name = (EventType.JOB_FAILED, JobFailedPayload(error=error), "failed")
    event = make_event(
        type_, payload, tenant="acme", source="worker/pose", job_id=job_id, kind="pose", attempt=1,
        event_id=worker_event_id(job_id, 1, name),
    )  # fmt: skip
    headers = fence_headers(subjects.stored_job_event("acme", job_id, "dispatched"), fence)
    return await publish_event(js, subjects.job_event("acme", job_id, name), event, headers=headers)


async def _endings(js: JetStreamContext, namespace: Namespace, subjects: Subjects, job_id: str) -> list[str]:
    events = await stored(js, namespace, subjects.job_events("acme", job_id))
    return [e.type for e in events if e.type in TERMINAL_JOB_EVENTS]


async def test_a_cancel_after_its_worker_ended_the_run_is_not_stored_and_hands_back_that_ending(
    acme: Tenant, js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, subjects: Subjects
) -> None:
    """The worker's job.succeeded is stored as the holder sees the cancel request: the holder's
    job.canceled is answered as a duplicate, and the attempt counts as succeeded."""
    record = await _job(acme, jobs_kv)
    fence = await dispatched(js, subjects, record.id, 1)
    assert not (await _worker_ends(js, subjects, record.id, fence)).duplicate
    ending = await JobEvents(js, namespace).publish_canceled(record, RUNNING, 1, 1)
    assert (ending.type, ending.id) == ("job.succeeded", worker_event_id(record.id, 1, "succeeded"))
    assert await _endings(js, namespace, subjects, record.id) == ["job.succeeded"]


async def test_a_worker_ending_after_the_cancel_is_dropped(
    acme: Tenant, js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, subjects: Subjects
) -> None:
    """The holder's job.canceled is stored first; the killed worker's ending, still in flight, passes its
    fence (no later dispatch) and is a duplicate: the job ends once, canceled."""
    record = await _job(acme, jobs_kv)
    fence = await dispatched(js, subjects, record.id, 1)
    ending = await JobEvents(js, namespace).publish_canceled(record, RUNNING, 1, 1)
    assert ending.type == "job.canceled"
    assert (await _worker_ends(js, subjects, record.id, fence, failed=True)).duplicate
    assert (await _worker_ends(js, subjects, record.id, fence)).duplicate
    assert await _endings(js, namespace, subjects, record.id) == ["job.canceled"]


async def test_a_job_is_canceled_once_by_whoever_cancels_it(
    acme: Tenant, js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, subjects: Subjects
) -> None:
    """The fold cancels a record it sees queued while a holder (its view ahead) cancels the run, each
    ending another attempt (other ``Nats-Msg-Id``\\ s): the fence on job.canceled stores the first only,
    and each is handed back that one; the fold's cancel, redelivered, is refused the same way."""
    record = await _job(acme, jobs_kv)
    events = JobEvents(js, namespace)
    first = await events.publish_canceled(record, QUEUED, 2)  # the fold: retrying, so attempt 2 would run
    assert first.type == "job.canceled"
    again = await events.publish_canceled(record, RUNNING, 1, 1)  # the holder of attempt 1
    assert (again.id, again.data) == (first.id, first.data)
    redelivered = await events.publish_canceled(record, QUEUED, 2)
    assert redelivered.data == first.data
    assert await _endings(js, namespace, subjects, record.id) == ["job.canceled"]


async def test_a_fold_cancel_of_a_queued_attempt_drops_that_attempts_late_ending(
    acme: Tenant, js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, subjects: Subjects
) -> None:
    """The fold's record lags: it says queued while attempt 1 already runs. Its job.canceled ends attempt
    1, so that attempt's worker ending after it is a duplicate, not a second terminal event."""
    record = await _job(acme, jobs_kv)
    fence = await dispatched(js, subjects, record.id, 1)
    assert (await JobEvents(js, namespace).publish_canceled(record, QUEUED, 1)).type == "job.canceled"
    assert (await _worker_ends(js, subjects, record.id, fence)).duplicate
    assert await _endings(js, namespace, subjects, record.id) == ["job.canceled"]
