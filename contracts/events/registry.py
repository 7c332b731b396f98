"""Every event type (v1), its payload model, and the helpers to build and read envelopes.

>>> from contracts.events.jobs import JobProgressPayload
>>> env = make_event(EventType.JOB_PROGRESS, JobProgressPayload(fraction=0.5), tenant="acme",
...                  source="worker/pose", job_id="job_1", kind="pose", attempt=1)
>>> parse_payload(env)
JobProgressPayload(fraction=0.5, stage=None, message=None)
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel

from contracts.envelope import EventEnvelope, utc_now
from contracts.event_ids import created_event_id
from contracts.events import jobs as je
from contracts.events import sessions as se
from contracts.events.robots import JointSample
from contracts.events.uploads import UploadCompletedPayload
from contracts.events.webhooks import WebhookDeadLetteredPayload
from contracts.ids import new_uuid7
from contracts.job_record import JobRecord

_P = TypeVar("_P", bound=BaseModel)


class EventType(StrEnum):
    """Every event type; the value is the envelope's ``type``."""

    JOB_CREATED = "job.created"
    JOB_QUEUED = "job.queued"
    JOB_POSITION = "job.position"
    JOB_DISPATCHED = "job.dispatched"
    JOB_STARTED = "job.started"
    JOB_PROGRESS = "job.progress"
    JOB_LOG = "job.log"
    JOB_ARTIFACT = "job.artifact"
    JOB_HEARTBEAT = "job.heartbeat"
    JOB_STAGE = "job.stage"
    JOB_RETRYING = "job.retrying"
    JOB_CANCEL_REQUESTED = "job.cancel_requested"
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"
    JOB_CANCELED = "job.canceled"
    UPLOAD_COMPLETED = "upload.completed"
    ROBOT_JOINTS = "robot.joints"
    WEBHOOK_DEAD_LETTERED = "webhook.dead_lettered"
    SESSION_STOP_REQUESTED = "session.stop_requested"
    SESSION_SNAPSHOT = "session.snapshot"
    SESSION_RESULT = "session.result"
    SESSION_ALERT = "session.alert"
    SESSION_READY = "session.ready"
    SESSION_RESUMED = "session.resumed"


_E = EventType
PAYLOADS: dict[EventType, type[BaseModel]] = {
    _E.JOB_CREATED: je.JobCreatedPayload,
    _E.JOB_QUEUED: je.JobQueuedPayload,
    _E.JOB_POSITION: je.JobPositionPayload,
    _E.JOB_DISPATCHED: je.JobDispatchedPayload,
    _E.JOB_STARTED: je.JobStartedPayload,
    _E.JOB_PROGRESS: je.JobProgressPayload,
    _E.JOB_LOG: je.JobLogPayload,
    _E.JOB_ARTIFACT: je.JobArtifactPayload,
    _E.JOB_HEARTBEAT: je.JobHeartbeatPayload,
    _E.JOB_STAGE: je.JobStagePayload,
    _E.JOB_RETRYING: je.JobRetryingPayload,
    _E.JOB_CANCEL_REQUESTED: je.JobCancelRequestedPayload,
    _E.JOB_SUCCEEDED: je.JobSucceededPayload,
    _E.JOB_FAILED: je.JobFailedPayload,
    _E.JOB_CANCELED: je.JobCanceledPayload,
    _E.UPLOAD_COMPLETED: UploadCompletedPayload,
    _E.ROBOT_JOINTS: JointSample,
    _E.WEBHOOK_DEAD_LETTERED: WebhookDeadLetteredPayload,
    _E.SESSION_STOP_REQUESTED: se.SessionStopRequestedPayload,
    _E.SESSION_SNAPSHOT: se.SessionSnapshotPayload,
    _E.SESSION_RESULT: se.SessionResultPayload,
    _E.SESSION_ALERT: se.SessionAlertPayload,
    _E.SESSION_READY: se.SessionReadyPayload,
    _E.SESSION_RESUMED: se.SessionResumedPayload,
}
"""The payload model of each event type."""

SESSION_EVENT_TYPES: frozenset[EventType] = frozenset(t for t in EventType if t.startswith("session."))
"""Live-session events; a session is a job, so they travel on its job subjects too."""
JOB_EVENT_TYPES: frozenset[EventType] = frozenset(t for t in EventType if t.startswith("job.")) | SESSION_EVENT_TYPES
"""The types published on ``jobs.{tenant}.{job_id}.{event}``."""
TERMINAL_JOB_EVENTS: frozenset[EventType] = frozenset({_E.JOB_SUCCEEDED, _E.JOB_FAILED, _E.JOB_CANCELED})
"""Job events after which a job's stream ends."""
ATTEMPT_ENDINGS: frozenset[EventType] = frozenset({_E.JOB_SUCCEEDED, _E.JOB_FAILED, _E.JOB_RETRYING})
"""Job events that end an attempt: one per attempt is stored (:func:`contracts.event_ids.attempt_end_msg_id`)."""

# Payload field that names the envelope's ``subject`` when none is given.
_SUBJECT_FIELD: dict[str, str] = {
    "upload.": "upload_id",
    "robot.": "robot_id",
    "webhook.": "endpoint_id",
}


class UnknownEventTypeError(ValueError):
    """An envelope ``type`` that is not an :class:`EventType`."""


def event_type(value: str) -> EventType:
    """``value`` as an :class:`EventType`, or :class:`UnknownEventTypeError`."""
    try:
        return EventType(value)
    except ValueError:
        raise UnknownEventTypeError(f"unknown event type {value!r}") from None


def job_event_name(type_: EventType | str) -> str:
    """The subject token of a job (or session) event type: ``job.progress`` → ``progress``,
    ``session.snapshot`` → ``snapshot``."""
    t = event_type(type_)
    if t not in JOB_EVENT_TYPES:
        raise ValueError(f"{t} is not a job event")
    return t.partition(".")[2]


def make_event(
    type_: EventType | str,
    payload: BaseModel,
    *,
    tenant: str,
    source: str,
    job_id: str | None = None,
    kind: str | None = None,
    attempt: int | None = None,
    subject: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> EventEnvelope:
    """An envelope of ``type_`` carrying ``payload`` (which must be exactly ``PAYLOADS[type_]``).

    Job events need ``job_id``; ``subject`` defaults to the job id, or to the upload, robot,
    endpoint or session id of the payload. ``event_id`` and ``time`` default to a new UUIDv7 and now.
    """
    t = event_type(type_)
    expected = PAYLOADS[t]
    if type(payload) is not expected:
        raise TypeError(f"{t} carries {expected.__name__}, not {type(payload).__name__}")
    if t in JOB_EVENT_TYPES and job_id is None:
        raise ValueError(f"{t} needs a job_id")
    if subject is None:
        subject = job_id
        for prefix, field in _SUBJECT_FIELD.items():
            if t.startswith(prefix):
                subject = getattr(payload, field)
    return EventEnvelope(
        id=event_id or new_uuid7(),
        type=t.value,
        source=source,
        time=time or utc_now(),
        subject=subject,
        tenant=tenant,
        job_id=job_id,
        kind=None if kind is None else str(kind),
        attempt=attempt,
        data=payload.model_dump(mode="json"),
    )


def parse_payload(envelope: EventEnvelope) -> BaseModel:
    """Validate ``envelope.data`` against its type's payload model.

    Raises :class:`UnknownEventTypeError` for an unknown type and ``pydantic.ValidationError``
    for data that does not fit.
    """
    return PAYLOADS[event_type(envelope.type)].model_validate(envelope.data)


def parse_payload_as(envelope: EventEnvelope, model: type[_P]) -> _P:
    """Like :func:`parse_payload`, typed: ``model`` must be the payload model of the envelope's type."""
    expected = PAYLOADS[event_type(envelope.type)]
    if expected is not model:
        raise TypeError(f"{envelope.type} carries {expected.__name__}, not {model.__name__}")
    return model.model_validate(envelope.data)


CREATED_RECORD_REVISION = "Gpurelay-Record-Revision"
"""A header of ``job.created`` as the gateway publishes it: the KV ``jobs`` revision of the first record
it created just before, which the fold takes instead of reading the record back (issue 34: a message
get and its reply a job). A republished copy never carries it (its revision would be stale)."""


def job_created_event(
    record: JobRecord, source: str = "gateway", upload_sizes: dict[str, int] | None = None
) -> EventEnvelope:
    """The ``job.created`` event of a job's first record, with the deterministic id ``created-{job_id}``
    (``upload_sizes``: of its uploads found complete when it was accepted).

    The id is derived from the job, so a retried publish is stored once.
    """
    payload = je.JobCreatedPayload(
        spec=record.spec, max_attempts=record.max_attempts, subject=record.subject, upload_sizes=upload_sizes or None
    )
    return make_event(
        EventType.JOB_CREATED,
        payload,
        tenant=record.tenant,
        source=source,
        job_id=record.id,
        kind=record.kind,
        event_id=created_event_id(record.id),
        time=record.created_at,
    )
