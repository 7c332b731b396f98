"""An attempt's events as the dispatcher publishes them, for tests of how a worker's events meet them."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import PubAck
from pydantic import BaseModel

from contracts.envelope import utc_now
from contracts.event_ids import attempt_end_msg_id, attempt_event_id, canceled_event_id
from contracts.events.jobs import JobCanceledPayload, JobDispatchedPayload, JobRetryingPayload
from contracts.events.registry import EventType, job_event_name, make_event
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.subjects import Subjects
from services.common.nats.publish import fence_headers, publish_event
from services.dispatcher.job_events import JobEvents
from tests.support.lap import TENANT, lap_request


async def dispatcher_event(
    js: JetStreamContext, subjects: Subjects, job_id: str, attempt: int, type_: EventType, payload: BaseModel,
    name: str,
) -> PubAck:  # fmt: skip
    """Publish ``attempt``'s ``name`` event of ``type_`` as the dispatcher does (its id, its headers); the ack."""
    event = make_event(
        type_, payload, tenant=TENANT, source="dispatcher", job_id=job_id, kind="lap_compare", attempt=attempt,
        event_id=attempt_event_id(job_id, attempt, name),
    )  # fmt: skip
    return await publish_event(js, subjects.job_event(TENANT, job_id, job_event_name(type_)), event)


async def dispatched(js: JetStreamContext, subjects: Subjects, job_id: str, attempt: int) -> int:
    """Publish ``attempt``'s ``job.dispatched`` (local pool) with the dispatcher's own
    :meth:`~services.dispatcher.job_events.JobEvents.publish_dispatched` (following the job's last one); its JOBS
    sequence, the worker's fence."""
    record = JobRecord.new(job_id, TENANT, parse_job_spec(lap_request({"video": "upl_x"}).spec), utc_now())
    payload = JobDispatchedPayload(backend="local", function="quick")
    return await JobEvents(js, subjects.ns).publish_dispatched(record, payload, attempt)


async def retrying(js: JetStreamContext, subjects: Subjects, job_id: str, attempt: int) -> PubAck:
    """Publish ``attempt``'s ``job.retrying`` (the dispatcher gave it up: silent, timed out); the ack."""
    payload = JobRetryingPayload(reason="worker_lost", next_attempt=attempt + 1)
    return await dispatcher_event(js, subjects, job_id, attempt, EventType.JOB_RETRYING, payload, "retrying")


async def canceled(js: JetStreamContext, subjects: Subjects, job_id: str, ends: int) -> PubAck:
    """Publish the job's ``job.canceled`` as the dispatcher does (its id, the ``Nats-Msg-Id`` of the attempt
    ``ends``, fenced to one per job); the ack."""
    event = make_event(
        EventType.JOB_CANCELED, JobCanceledPayload(), tenant=TENANT, source="dispatcher", job_id=job_id,
        kind="lap_compare", attempt=ends, event_id=canceled_event_id(job_id),
    )  # fmt: skip
    subject = subjects.job_event(TENANT, job_id, "canceled")
    fence = fence_headers(subjects.stored_job_event(TENANT, job_id, "canceled"), 0)  # as JOBS stores it
    msg_id = attempt_end_msg_id(job_id, ends)
    return await publish_event(js, subject, event, msg_id=msg_id, headers=fence)
