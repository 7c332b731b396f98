"""The dispatcher's job records in KV ``jobs``, written with compare-and-set.

:class:`JobStore` folds one event into KV ``jobs`` with compare-and-set on the revision, re-reading
and re-applying on a conflict, so concurrent writers never lose an update. A record that no longer
validates is failed (``invalid_record``) where it is read, so nothing wedges on it. The events the
dispatcher publishes are in :mod:`services.dispatcher.job_events`, its dispatch tickets in
:mod:`services.dispatcher.running.tickets`.
"""

from __future__ import annotations

import logging

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.envelope import EventEnvelope, utc_now
from contracts.event_ids import failed_event_id
from contracts.events.jobs import JobFailedPayload
from contracts.events.registry import EventType
from contracts.ids import tenant_key
from contracts.job_record import JobRecord
from contracts.record_repair import INVALID_RECORD, UnreadableRecordError, failed_in_place_of, read_record
from services.common.nats.kv_writes import kv_write
from services.dispatcher.fold.records import Pricing, apply, no_pricing
from services.dispatcher.job_events import JobEvents

log = logging.getLogger(__name__)
CAS_ATTEMPTS = 50


class JobStore:
    """Job records in KV ``jobs``, moved only by :func:`~services.dispatcher.fold.records.apply`, and replaced
    by a failed one when what KV holds no longer validates (``events`` publishes its ``job.failed``)."""

    def __init__(self, kv: KeyValue, pricing: Pricing = no_pricing, events: JobEvents | None = None) -> None:
        self.kv, self.pricing, self.events = kv, pricing, events

    async def get(self, tenant: str, job_id: str) -> tuple[JobRecord | None, int | None]:
        """The record and its revision (``None, None`` when there is none).

        A record that no longer validates is replaced first by the failed record
        :func:`~contracts.record_repair.failed_in_place_of` makes of it (its ``job.failed`` published
        before it is written), so no reader wedges on it; when none can be made,
        :class:`~contracts.record_repair.UnreadableRecordError` (a fold retries, then dead-letters).
        """
        key = tenant_key(tenant, job_id)
        for _ in range(CAS_ATTEMPTS):
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                return None, None
            if not entry.value:
                return None, None
            try:
                return read_record(entry.value), entry.revision
            except UnreadableRecordError as exc:
                failed = failed_in_place_of(entry.value, tenant, job_id, utc_now())
                if failed is None:
                    raise
                log.error("job %s: its stored record is not valid (%s); failing it", job_id, exc)
                revision = await self._replace(failed, entry.revision)
                if revision is not None:
                    return failed, revision
        raise RuntimeError(f"job {job_id}: too many concurrent updates")

    async def _replace(self, failed: JobRecord, revision: int | None) -> int | None:
        """Publish ``failed``'s ``job.failed`` (when it was failed here), then write it over ``revision``."""
        if failed.error is not None and failed.error.code == INVALID_RECORD and self.events is not None:
            event_id, payload = failed_event_id(failed.id, failed.attempt), JobFailedPayload(error=failed.error)
            # the job's end, not its attempt's: stored even after the attempt's own ending (job.retrying)
            await self.events.publish(failed, EventType.JOB_FAILED, payload, event_id, msg_id=event_id)
        return await self.put(failed, revision)

    async def apply(self, event: EventEnvelope) -> tuple[JobRecord | None, bool]:
        """Fold ``event`` into its job's record with compare-and-set; the record after it, and whether
        the event moved it (a redelivered or stale one does not)."""
        assert event.job_id is not None
        for _ in range(CAS_ATTEMPTS):
            record, revision = await self.get(event.tenant, event.job_id)
            moved = apply(record, event, self.pricing)
            if moved is record or moved is None:
                return record, False
            if await self.write(moved, revision):
                return moved, True
        raise RuntimeError(f"job {event.job_id}: too many concurrent updates")

    async def write(self, record: JobRecord, revision: int | None) -> bool:
        """Write ``record`` if the key is still at ``revision``; ``False`` on a conflict."""
        return await self.put(record, revision) is not None

    async def put(self, record: JobRecord, revision: int | None) -> int | None:
        """Write ``record`` if the key is still at ``revision`` (``None``: no record yet); its new
        revision, or ``None`` on a conflict."""
        key, value = tenant_key(record.tenant, record.id), record.model_dump_json().encode()
        return await kv_write(self.kv, key, value, revision)
