"""The dispatcher's reads of JOBS name job events as JOBS stores them: with their slot token.

JOBS rewrites each ``jobs.{tenant}.{job_id}.{event}`` it stores as ``jobs.{tenant}.{job_id}.{event}.{slot}``
(a stream subject transform). A get or a fence naming the published subject finds nothing stored: the
fence that keeps a job's ``job.canceled`` to one (``(subject, 0)``) then always passed, and a get said
not found.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from contracts.envelope import utc_now
from contracts.events.jobs import JobCanceledPayload
from contracts.ids import new_id
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.streams import JOBS, Declarations
from contracts.subjects import Namespace, Subjects
from services.dispatcher.job_events import JobEvents
from tests.support.dispatcher import POSE
from tests.support.gateway import stored


async def test_a_jobs_cancel_is_stored_once_on_a_jobs_that_stores_slots(
    js: JetStreamContext, declared: Declarations, namespace: Namespace, subjects: Subjects
) -> None:
    """A second ``publish_canceled`` (another attempt's ending id: not a duplicate) after a stored one is
    fenced out and handed the stored one; JOBS holds one ``job.canceled``, found by :meth:`JobEvents.last`."""
    assert (await js.stream_info(namespace.stream(JOBS))).config.subject_transform is not None
    record = JobRecord.new(new_id("job"), "acme", parse_job_spec(POSE), utc_now())
    events = JobEvents(js, namespace)
    first = await events.publish_canceled(record, JobCanceledPayload(reason="the first"), 1)
    again = await events.publish_canceled(record, JobCanceledPayload(reason="the second"), 2)
    assert (again.id, again.data) == (first.id, first.data)
    canceled = await stored(js, namespace, subjects.job_events("acme", record.id))
    assert [(e.type, e.data) for e in canceled] == [("job.canceled", first.data)]
    last = await events.last(record, "canceled")
    assert last is not None
    assert last.data == first.data
