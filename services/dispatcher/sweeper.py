"""Jobs whose ``job.created`` never reached the stream: found and published again.

The gateway writes a job's first record with a KV create, then publishes ``job.created``. When that
publish fails (and the client never retries), the record would stay ``created`` for ever: nothing in
the stream names the job. :class:`CreatedSweeper` learns of every ``created`` record from the
dispatcher's KV watch (:meth:`on_record`); every ``created_sweep_interval_s`` it looks at those
older than ``created_republish_after_s``: a job whose ``job.created`` is in the stream is fine (it
may wait on uploads) and is forgotten; one without gets :func:`~contracts.events.job_created_event`
published, with the gateway's deterministic id ``created-{job_id}``, so a late original (or another
replica's sweep) is stored once. The fold then takes the job on as usual.

It keeps only the keys of ``created`` records not yet confirmed (a few per second of submissions,
plus the jobs waiting on uploads until the first sweep after they are due).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from contracts.envelope import utc_now
from contracts.ids import tenant_key
from contracts.job_record import JobRecord, JobStatus
from services.dispatcher.store import JobEvents, JobStore

log = logging.getLogger(__name__)


class CreatedSweeper:
    """Publishes the missing ``job.created`` of records stuck in ``created``."""

    def __init__(
        self,
        store: JobStore,
        events: JobEvents,
        republish_after_s: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store, self.events, self.clock = store, events, clock
        self.after = timedelta(seconds=republish_after_s)
        self.candidates: dict[str, tuple[str, str, datetime]] = {}
        self.republished = 0
        self.confirmed = 0

    def on_record(self, record: JobRecord) -> None:
        """A record changed in KV: remember it while it is ``created``."""
        key = tenant_key(record.tenant, record.id)
        if record.status is JobStatus.CREATED:
            self.candidates.setdefault(key, (record.tenant, record.id, record.created_at))
        else:
            self.candidates.pop(key, None)

    async def sweep(self) -> list[str]:
        """Publish ``job.created`` for every due candidate the stream lacks; their job ids."""
        now, published = self.clock(), []
        for key, (tenant, job_id, created_at) in list(self.candidates.items()):
            if now - created_at < self.after:
                continue
            record, _ = await self.store.get(tenant, job_id)
            if record is None or record.status is not JobStatus.CREATED:
                self.candidates.pop(key, None)
                continue
            if await self.events.last(record, "created") is not None:
                self.confirmed += 1
            elif await self.events.publish_created(record):
                self.republished += 1
                published.append(job_id)
                log.warning("job %s was created without job.created; published it", job_id, extra={"job_id": job_id})
            self.candidates.pop(key, None)
        return published
