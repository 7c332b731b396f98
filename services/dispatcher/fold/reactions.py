"""What the dispatcher does when it folds a job event or sees an upload complete.

* ``job.created``: queue the job when every upload input is complete, else note in KV
  ``dispatcher_waits`` which uploads it waits on (``{tenant}.{upload}.{job}``); the note is written
  *before* the uploads are read, so an ``upload.completed`` that races the check still finds it.
* ``upload.completed``: re-check each job waiting on that upload (event-driven, no polling); the notes
  are read by :func:`~services.common.nats.kv.kv_scan` (an upload has a note or two, most none: a
  message get each and one more, where a consumer's listing cost ~8 messages per upload, issue 34),
  unless the gateway's header says no job named the upload while it was pending (none is read then).
* releasing a job (``job.queued``) and ``job.retrying``: put the attempt in its kind's queue index
  (due after the backoff) and publish its dispatch ticket (:mod:`services.dispatcher.scheduling.scheduler`).
  A released job is queued at once, before its ``job.queued`` is folded: a ticket that claims its
  entry just now knows it was queued (the entry is made after ``job.queued``); a redelivered one
  that finds the record still ``created`` checks the stream for ``job.queued``.
* ``job.cancel_requested`` while no worker runs (created, queued, retrying): ``job.canceled`` now,
  and its queue entry dropped; a running attempt is canceled by the replica that holds it.

A job released by its upload goes on in its own trace (that of the request that created it, read
from its ``job.created``), linked to the upload's. An event that moved a record is counted
(:func:`~services.dispatcher.observe.observe_folded`).

Every reaction publishes with a deterministic id and checks the folded record first, so a
redelivered event repeats nothing. Bytes that are not an event raise
:class:`~services.dispatcher.consumers.PoisonMessage`: the consumer dead-letters them at once.
"""

from __future__ import annotations

import functools
import logging

from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from contracts.api.uploads import UploadRecord, UploadStatus
from contracts.envelope import EventEnvelope
from contracts.event_ids import failed_event_id, queued_event_id
from contracts.events import jobs as je
from contracts.events.registry import EventType, parse_payload_as
from contracts.events.uploads import UPLOAD_AWAITED
from contracts.ids import tenant_key
from contracts.job_parts import JobError, JobStatus
from contracts.job_record import JobRecord
from contracts.route_table import Route
from services.common.nats.kv import kv_scan
from services.common.observability import tracing
from services.dispatcher.consumers import PoisonMessage
from services.dispatcher.job_events import JobEvents
from services.dispatcher.observe import observe_folded
from services.dispatcher.scheduling.positions import Positions
from services.dispatcher.scheduling.queue import QueueIndex
from services.dispatcher.scheduling.queue_entries import QueueEntry, entry_key, new_entry
from services.dispatcher.store import JobStore

log = logging.getLogger(__name__)
_S = JobStatus
REACTS_TO = frozenset({EventType.JOB_CREATED, EventType.JOB_RETRYING, EventType.JOB_CANCEL_REQUESTED})
"""The event types :meth:`Reactions.react` acts on (the batched fold writes the record before each)."""


class Reactions:
    """Folds job events into KV and reacts to the new state."""

    def __init__(
        self,
        store: JobStore,
        events: JobEvents,
        uploads: KeyValue,
        waits: KeyValue,
        routes: dict[str, Route],
        queue: QueueIndex,
        positions: Positions,
    ) -> None:
        self.store, self.events, self.uploads, self.waits, self.routes = store, events, uploads, waits, routes
        self.queue, self.positions = queue, positions

    async def on_job_event(self, body: bytes) -> JobRecord | None:
        """Fold one event of the JOBS stream, then react; :class:`PoisonMessage` for bytes that are no event."""
        event = parse_envelope(body)
        if event.job_id is None:
            return None
        record, moved = await self.store.apply(event)
        if record is not None:
            if moved:
                observe_folded(record)
            await self.react(event, record)
        return record

    async def react(self, event: EventEnvelope, record: JobRecord) -> None:
        """The side effects of ``event`` on the folded ``record`` (only types in :data:`REACTS_TO` have any)."""
        match event.type:
            case EventType.JOB_CREATED:
                await self.release_if_ready(record, known=_upload_sizes(event))
            case EventType.JOB_RETRYING if record.status is _S.RETRYING and not record.cancel_requested:
                delay = parse_payload_as(event, je.JobRetryingPayload).delay_s
                await self.enqueue(record, record.attempt + 1, delay)
            case EventType.JOB_CANCEL_REQUESTED if record.status in (_S.CREATED, _S.QUEUED, _S.RETRYING):
                payload = je.JobCanceledPayload(reason="canceled before it ran")
                attempt = record.attempt + (record.status is _S.RETRYING)  # the attempt it ends, queued
                await self.events.publish_canceled(record, payload, attempt)
                await self.queue.remove(entry_key(str(record.kind), record.tenant, record.id, attempt))

    async def enqueue(
        self,
        record: JobRecord,
        attempt: int,
        delay_s: float = 0.0,
        sizes: list[int | None] | None = None,
        entry: QueueEntry | None = None,
    ) -> None:
        """Queue ``attempt`` of ``record`` (due after ``delay_s``), say where it stands (unless ``job.queued``
        said it), publish its ticket (``sizes``: its uploads' sizes when known, else read; ``entry``: made)."""
        entry = entry or new_entry(record, attempt, delay_s, await self._input_bytes(record, sizes))
        ticket = functools.partial(self.events.ticket, record, attempt, delay_s)
        if await self.queue.enqueue(entry):
            await self.positions.queued(entry, then=ticket)  # the position first, the ticket behind it
        else:
            await ticket()

    async def _input_bytes(self, record: JobRecord, sizes: list[int | None] | None = None) -> int | None:
        """The size of the job's uploaded inputs (``None`` without uploads: the ETA's size class)."""
        if sizes is None:
            uploads = [await self._upload(record.tenant, u) for u in record.spec.upload_ids()]
            sizes = [u.size if u is not None else None for u in uploads]
        known = [s for s in sizes if s is not None]
        return sum(known) if known else None

    async def _upload(self, tenant: str, upload_id: str) -> UploadRecord | None:
        try:
            entry = await self.uploads.get(tenant_key(tenant, upload_id))
        except KeyNotFoundError:
            return None
        return UploadRecord.model_validate_json(entry.value) if entry.value else None

    async def release_if_ready(
        self, record: JobRecord, noted: bool = False, known: dict[str, int] | None = None
    ) -> None:
        """Queue a ``created`` job whose inputs are all complete; else note that it waits for its uploads
        (KV ``dispatcher_waits``, which ``upload.completed`` reads). An upload complete at the first look
        needs no note; one that is not is noted, then looked at again (a completion between the look and
        the note is not missed). ``noted``: notes of an earlier look may exist (deleted on release).
        ``known``: the sizes of uploads the gateway found complete (``job.created``), not read again."""
        if record.status is not _S.CREATED:
            return
        if record.kind not in self.routes:
            error = JobError(code="unroutable", message=f"no route for kind {record.kind!r} in this deployment")
            failed = je.JobFailedPayload(error=error)
            await self.events.publish(record, EventType.JOB_FAILED, failed, failed_event_id(record.id, 1))
            return
        if record.cancel_requested:
            payload = je.JobCanceledPayload(reason="canceled before it ran")
            await self.events.publish_canceled(record, payload, record.attempt)
            return
        upload_ids, known = record.spec.upload_ids(), known or {}
        found = {u: await self._upload(record.tenant, u) for u in upload_ids if u not in known}
        if pending := [u for u in found if not _completed(found[u])]:
            for upload_id in pending:
                await self.waits.put(f"{record.tenant}.{upload_id}.{record.id}", b"")
            noted = True
            found |= {u: await self._upload(record.tenant, u) for u in pending}
            if pending := [u for u in pending if not _completed(found[u])]:
                log.info("job waits on uploads", extra={"job_id": record.id, "uploads": pending})
                return
        sizes = [known[u] if u in known else _size(found[u]) for u in upload_ids]
        entry = new_entry(record, record.attempt, input_bytes=await self._input_bytes(record, sizes))
        try:
            queued = await self.positions.told_in_queued(entry)  # its place, so no job.position follows
            await self.events.publish(record, EventType.JOB_QUEUED, queued, queued_event_id(record.id))
            await self.enqueue(record, record.attempt, entry=entry)  # now, not when job.queued is folded
        finally:
            self.positions.made(entry)
        for upload_id in upload_ids if noted else ():
            await self.waits.delete(f"{record.tenant}.{upload_id}.{record.id}")

    async def resume(self, record: JobRecord, latest: dict[str, EventEnvelope]) -> str | None:
        """Do again what an unmoving ``record``, equal to the fold of its events (``latest``: the last of
        each type), still waits on from us: its event was folded but the reaction lost (an event whose
        deliveries an outage used up can be dead-lettered, and the record reads the same without it). What
        was done, or ``None``: it waits on its uploads, or on a queue entry that is there."""
        if record.status is _S.CREATED:
            uploads = [await self._upload(record.tenant, u) for u in record.spec.upload_ids()]
            if not all(_completed(u) for u in uploads):
                return None  # upload.completed releases it
            await self.release_if_ready(record)
            return "released"
        if record.status not in (_S.QUEUED, _S.RETRYING):
            return None
        if record.cancel_requested:  # nothing to queue: only the cancel is owed
            if (cancel := latest.get(EventType.JOB_CANCEL_REQUESTED)) is None:
                return None
            await self.react(cancel, record)
            return "canceled"
        attempt = record.attempt + (record.status is _S.RETRYING)
        try:
            await self.queue.kv.get(entry_key(str(record.kind), record.tenant, record.id, attempt))
            return None  # queued (or running: a claimed entry stays until its attempt ends)
        except KeyNotFoundError:
            pass
        retrying = latest.get(EventType.JOB_RETRYING)
        if record.status is _S.RETRYING and retrying is not None:
            await self.react(retrying, record)
        else:
            await self.enqueue(record, attempt)
        return f"attempt {attempt} queued"

    async def on_upload_completed(self, msg: Msg) -> None:
        """Re-check every job that waits on the completed upload; none when the gateway says no job named
        it while it was pending (:data:`~contracts.events.uploads.UPLOAD_AWAITED` ``0``)."""
        if (msg.headers or {}).get(UPLOAD_AWAITED) == "0":
            return
        event = parse_envelope(msg.data)
        upload_id = event.subject or ""
        waiting = await kv_scan(self.waits, f"{event.tenant}.{upload_id}.*")  # a few keys: gets, no consumer
        job_ids = [item.key.rsplit(".", 1)[1] for item in waiting]
        for job_id in job_ids:
            record, _ = await self.store.get(event.tenant, job_id)
            if record is not None:
                # The job's own trace goes on (the request that created it), linked to this upload's.
                parent = tracing.extract(await self.events.created_trace(record))
                with tracing.span("release job", parent, links=tracing.current_links(), attributes={"job.id": job_id}):
                    await self.release_if_ready(record, noted=True)


def _upload_sizes(created: EventEnvelope) -> dict[str, int]:
    """The sizes ``job.created`` says the gateway found complete, read field by field: the rest of its
    payload need not validate any more (the record's spec is what counts)."""
    sizes = created.data.get("upload_sizes")
    if not isinstance(sizes, dict):
        return {}
    return {u: n for u, n in sizes.items() if isinstance(n, int) and not isinstance(n, bool) and n > 0}


def _size(upload: UploadRecord | None) -> int | None:
    return upload.size if upload is not None else None


def _completed(upload: UploadRecord | None) -> bool:
    return upload is not None and upload.status is UploadStatus.COMPLETED


def parse_envelope(body: bytes) -> EventEnvelope:
    """The envelope in ``body``; :class:`PoisonMessage` (dead-lettered at once) when it is none."""
    try:
        return EventEnvelope.from_json_bytes(body)
    except ValidationError as exc:
        raise PoisonMessage(f"not a valid event envelope: {exc}") from exc
