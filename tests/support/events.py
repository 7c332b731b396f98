"""Events and records in tests: jobs, webhook endpoints, envelopes published to JOBS."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from contracts.api.webhooks import WebhookRecord, new_webhook_secret
from contracts.envelope import EventEnvelope
from contracts.events.jobs import JobCreatedPayload, JobLogPayload, JobProgressPayload, JobSucceededPayload
from contracts.events.registry import EventType, job_event_name, make_event
from contracts.events.webhooks import WebhookDeadLetteredPayload
from contracts.ids import new_id, tenant_key
from contracts.job_record import JobRecord
from contracts.specs.jobs import JobSpec, parse_job_spec
from contracts.streams import DEADLETTER
from contracts.subjects import Subjects


def job_spec(webhook: dict[str, Any] | None = None) -> JobSpec:
    """A pose spec, optionally with a per-job webhook."""
    body: dict[str, Any] = {"kind": "pose", "inputs": {"video": {"upload_id": "upl_1"}}}
    if webhook is not None:
        body["webhook"] = webhook
    return parse_job_spec(body)


async def create_job(jobs: KeyValue, tenant: str, spec: JobSpec | None = None) -> str:
    """Write a job record (as the gateway does) and return its id."""
    job_id = new_id("job")
    record = JobRecord.new(job_id, tenant, spec or job_spec(), datetime.now(UTC))
    await jobs.create(tenant_key(tenant, job_id), record.model_dump_json().encode())
    return job_id


async def create_endpoint(webhooks: KeyValue, tenant: str, url: str, events: list[str] | None = None) -> WebhookRecord:
    """Write a webhook endpoint record (as the gateway does)."""
    now = datetime.now(UTC)
    record = WebhookRecord(
        id=new_id("wh"),
        tenant=tenant,
        url=url,
        events=events or ["job.*"],
        secret=new_webhook_secret(),
        created_at=now,
        updated_at=now,
    )
    await webhooks.create(tenant_key(tenant, record.id), record.model_dump_json().encode())
    return record


async def read_endpoint(webhooks: KeyValue, tenant: str, endpoint_id: str) -> WebhookRecord:
    """The endpoint's record as stored now."""
    entry = await webhooks.get(tenant_key(tenant, endpoint_id))
    assert entry.value is not None
    return WebhookRecord.model_validate_json(entry.value)


def job_event(tenant: str, job_id: str, type_: EventType, payload: BaseModel | None = None) -> EventEnvelope:
    """A job event with a sensible default payload."""
    defaults: dict[EventType, BaseModel] = {
        EventType.JOB_LOG: JobLogPayload(message="hello"),
        EventType.JOB_PROGRESS: JobProgressPayload(fraction=0.5),
        EventType.JOB_SUCCEEDED: JobSucceededPayload(),
        EventType.JOB_CREATED: JobCreatedPayload(spec=job_spec()),
    }
    return make_event(
        type_, payload or defaults[type_], tenant=tenant, source="test", job_id=job_id, kind="pose", attempt=1
    )


async def publish(js: JetStreamContext, subjects: Subjects, event: EventEnvelope) -> int:
    """Publish a job event as the platform does; its stream sequence (its ack waited up to 10 s: nats-py's
    default 5 s ran out under a loaded machine's fsyncs)."""
    assert event.job_id is not None
    subject = subjects.job_event(event.tenant, event.job_id, job_event_name(event.type))
    ack = await js.publish(subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.id}, timeout=10)
    return int(ack.seq)


async def webhook_dead_letters(
    js: JetStreamContext, subjects: Subjects, tenant: str, endpoint_id: str
) -> list[tuple[WebhookDeadLetteredPayload, dict[str, str]]]:
    """Every ``webhook.dead_lettered`` of the endpoint in DEADLETTER, in order, with its headers."""
    found: list[tuple[WebhookDeadLetteredPayload, dict[str, str]]] = []
    for msg in await stored_on(js, subjects.ns.stream(DEADLETTER), subjects.webhook_dead(tenant, endpoint_id)):
        envelope = EventEnvelope.from_json_bytes(msg.data or b"")
        found.append((WebhookDeadLetteredPayload.model_validate(envelope.data), dict(msg.headers or {})))
    return found


async def stored_on(js: JetStreamContext, stream: str, subject: str) -> list[RawStreamMsg]:
    """Every message of ``stream`` on ``subject``, in stream order (direct gets)."""
    found: list[RawStreamMsg] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return found
        found.append(msg)
        seq = (msg.seq or seq) + 1
