"""The dispatcher's job events on JOBS, published with deterministic ids, and its dispatch tickets.

:class:`JobEvents` publishes job events with deterministic ids (``Nats-Msg-Id``), so a replay or a
restart that publishes the same state change again stores it once: a cancel racing a run's end is
one ending (:meth:`JobEvents.publish_canceled`), a launch follows the job's last one
(:meth:`JobEvents.publish_dispatched`). It also publishes the tickets
(:class:`~services.dispatcher.running.tickets.Ticket`) that ask for an attempt to run. The records
these events move are kept by :mod:`services.dispatcher.store`.
"""

from __future__ import annotations

import time
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError
from pydantic import BaseModel

from contracts.envelope import EventEnvelope
from contracts.event_ids import attempt_end_msg_id, attempt_event_id, canceled_event_id, ticket_msg_id
from contracts.events.jobs import JobCanceledPayload, JobDispatchedPayload
from contracts.events.registry import ATTEMPT_ENDINGS, EventType, job_created_event, job_event_name, make_event
from contracts.job_record import JobRecord
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.common.nats.publish import publish_event, publish_fenced, publish_following
from services.common.observability import tracing
from services.dispatcher.running.tickets import Ticket, dispatch_subject


class JobEvents:
    """Publishes the dispatcher's job events with deterministic ids."""

    def __init__(self, js: JetStreamContext, ns: Namespace, source: str = "dispatcher") -> None:
        self.js, self.ns, self.subjects, self.source = js, ns, Subjects(ns), source
        self.jobs = ns.stream(JOBS)

    async def publish(
        self,
        record: JobRecord,
        type_: EventType,
        payload: BaseModel,
        event_id: str,
        attempt: int | None = None,
        msg_id: str | None = None,
    ) -> EventEnvelope:
        """Publish one event about ``record`` (attempt defaults to the record's); the event stored: for an
        attempt's ending, the one stored first (the worker's, when it ended the attempt before this one
        was published: :func:`contracts.event_ids.attempt_end_msg_id`). ``msg_id``: the publish's own
        ``Nats-Msg-Id`` (:func:`~services.common.nats.publish.dedup_headers`)."""
        event = make_event(
            type_,
            payload,
            tenant=record.tenant,
            source=self.source,
            job_id=record.id,
            kind=record.kind,
            attempt=attempt or record.attempt,
            event_id=event_id,
        )
        subject = self.subjects.job_event(record.tenant, record.id, job_event_name(type_))
        ack = await publish_event(self.js, subject, event, msg_id=msg_id)
        return await self._stored(ack.seq) if ack.duplicate and type_ in ATTEMPT_ENDINGS else event

    async def publish_canceled(
        self, record: JobRecord, payload: JobCanceledPayload, ends: int, attempt: int | None = None
    ) -> EventEnvelope:
        """Publish the job's ``job.canceled``, which ends attempt ``ends`` (the one running, or the one
        queued that will not run); the job's ending stored. Stored once per job, whoever cancels: only
        while the job has no ``job.canceled`` (fenced on its subject, with no time limit), and with that
        attempt's ending ``Nats-Msg-Id``, so a worker's ending stored first wins (and is handed back)
        and one arriving after is dropped as a duplicate: a cancel racing a run's end is one ending.
        ``attempt``: the event's (default: the record's)."""
        subject = self.subjects.job_event(record.tenant, record.id, "canceled")
        event = make_event(
            EventType.JOB_CANCELED, payload, tenant=record.tenant, source=self.source, job_id=record.id,
            kind=record.kind, attempt=attempt or record.attempt, event_id=canceled_event_id(record.id),
        )  # fmt: skip
        fence = (self.subjects.stored_job_event(record.tenant, record.id, "canceled"), 0)  # as JOBS stores it
        ack = await publish_fenced(self.js, subject, event, fence, msg_id=attempt_end_msg_id(record.id, ends))
        if ack is None:
            return await self.last(record, "canceled") or event  # canceled before (a retried publish: by us)
        return await self._stored(ack.seq) if ack.duplicate else event  # duplicate: the attempt's ending, stored first

    async def publish_dispatched(self, record: JobRecord, payload: JobDispatchedPayload, attempt: int) -> int:
        """Publish ``attempt``'s ``job.dispatched``; its JOBS sequence when this launch is the one stored,
        else 0. Its id is the attempt's, so a second launch of the same attempt (a ticket redelivered
        while its first holder stalled between claim and launch) is a duplicate. Only this very event
        (its call id *and* its time) makes the stored copy ours, a retried publish of this launch: a
        call id alone does not, as one pool process of one replica launches many runs.

        It follows the job's last ``job.dispatched`` (:func:`publish_following`): while it is in flight, the
        attempt before's worker, whose every event is fenced on that subject, is refused rather than stored
        after it. One of this attempt, or a later one, already there (past the duplicate window) is 0."""
        event = make_event(
            EventType.JOB_DISPATCHED, payload, tenant=record.tenant, source=self.source, job_id=record.id,
            kind=record.kind, attempt=attempt, event_id=attempt_event_id(record.id, attempt, "dispatched"),
        )  # fmt: skip
        subject = self.subjects.job_event(record.tenant, record.id, "dispatched")
        fence, follows = self.subjects.stored_job_event(record.tenant, record.id, "dispatched"), 0
        while True:
            ack = await publish_following(self.js, self.jobs, subject, event, fence, follows)
            if isinstance(ack, PubAck):
                break
            latest = EventEnvelope.from_json_bytes(ack.data or b"{}")
            if latest.id == event.id and latest.time == event.time:  # ours: a retry after its ack was lost
                return ack.seq or 0
            if (latest.attempt or 0) >= attempt:
                return 0
            if (ack.seq or 0) <= follows:  # refused, yet the subject has not moved on: never spin on it
                raise RuntimeError(f"job.dispatched of {record.id} refused at {follows} with nothing after it")
            follows = ack.seq or 0
        if not ack.duplicate:
            return ack.seq
        stored = await self._stored(ack.seq)
        return ack.seq if stored.data.get("call_id") == payload.call_id and stored.time == event.time else 0

    async def publish_created(self, record: JobRecord) -> bool:
        """Publish the job's ``job.created`` (id ``created-{job_id}``); ``False`` when already stored."""
        event = job_created_event(record, source=self.source)
        subject = self.subjects.job_event(record.tenant, record.id, "created")
        ack = await publish_event(self.js, subject, event)
        return not ack.duplicate

    async def _stored(self, seq: int) -> EventEnvelope:
        """The event JOBS holds at ``seq`` (what a duplicate publish was a duplicate of)."""
        return EventEnvelope.from_json_bytes((await self.js.get_msg(self.ns.stream(JOBS), seq)).data or b"{}")

    async def last(self, record: JobRecord, name: str) -> EventEnvelope | None:
        """The job's latest ``job.{name}`` event in the stream (not the record), if any."""
        subject = self.subjects.stored_job_event(record.tenant, record.id, name)
        try:
            msg = await self.js.get_last_msg(self.ns.stream(JOBS), subject)
        except NotFoundError:
            return None
        return EventEnvelope.from_json_bytes(msg.data or b"{}")

    async def created_trace(self, record: JobRecord) -> dict[str, str]:
        """The trace context ``job.created`` was published with (the request that made the job)."""
        subject = self.subjects.stored_job_event(record.tenant, record.id, "created")
        try:
            msg = await self.js.get_last_msg(self.ns.stream(JOBS), subject)
        except NotFoundError:
            return {}
        return tracing.trace_headers(msg.headers)

    async def dispatched_at(self, record: JobRecord, attempt: int) -> datetime | None:
        """When ``attempt`` of ``record`` was dispatched, read from the stream (not the record)."""
        event = await self.last(record, "dispatched")
        return event.time if event is not None and event.attempt == attempt else None

    async def top_up(self, ticket: Ticket, count: int) -> None:
        """``count`` more tickets of ``ticket``'s kind (slot tokens: which job they run is the scheduler's)."""
        subject = dispatch_subject(self.ns, ticket.kind)
        for _ in range(count):
            await self.js.publish(subject, ticket.model_dump_json().encode())

    async def ticket(self, record: JobRecord, attempt: int, delay_s: float = 0.0) -> None:
        """Ask for ``attempt`` of ``record`` to run, after ``delay_s``; stored once per attempt."""
        ticket = Ticket(
            tenant=record.tenant,
            job_id=record.id,
            kind=record.kind,
            attempt=attempt,
            not_before=time.time() + delay_s if delay_s > 0 else 0.0,
        )
        await self.js.publish(
            dispatch_subject(self.ns, record.kind),
            ticket.model_dump_json().encode(),
            headers=tracing.inject({"Nats-Msg-Id": ticket_msg_id(record.id, attempt)}),  # the attempt joins the trace
        )
