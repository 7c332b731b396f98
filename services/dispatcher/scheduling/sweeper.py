"""Jobs whose ``job.created`` never reached the stream: found and published again.

The gateway writes a job's first record with a KV create, then publishes ``job.created``. When that
publish fails (and the client never retries), the record would stay ``created`` for ever: nothing in
the stream names the job. :class:`CreatedSweeper` learns of every ``created`` record by reading, at
each sweep (every ``created_sweep_interval_s``), what KV ``jobs`` stored since the last one
(:meth:`CreatedSweeper.scan`: one pull consumer for the whole batch, the first sweep reading every
record as it stands) and looks at those older than ``created_republish_after_s``: a job whose
``job.created`` is in the stream is fine (it may wait on uploads) and is forgotten; one without gets
:func:`~contracts.events.registry.job_created_event` published, with the gateway's deterministic id
``created-{job_id}``, so a late original (or another replica's sweep) is stored once. The fold then
takes the job on as usual.

A scan tells a ``created`` record by its bytes (``"status":"created"``, as the record serializes)
without parsing it; something else that reads so (a spec's parameter) is only looked at, the sweep
reading the record before it does anything. It keeps only the keys of ``created`` records not yet
confirmed (the submissions of a sweep interval that have not moved on, plus the jobs waiting on
uploads until the first sweep after they are due).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from nats.aio.msg import Msg
from nats.js.kv import KV_OP

from contracts.envelope import utc_now
from contracts.ids import tenant_key
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.record_repair import UnreadableRecordError
from services.dispatcher.job_events import JobEvents
from services.dispatcher.kv_writes import WriteLog
from services.dispatcher.store import JobStore

log = logging.getLogger(__name__)
CREATED = b'"status":"created"'
"""How a ``created`` record's status reads in its JSON (:meth:`JobRecord.model_dump_json`)."""


class CreatedSweeper:
    """Publishes the missing ``job.created`` of records stuck in ``created``."""

    def __init__(
        self,
        store: JobStore,
        events: JobEvents,
        republish_after_s: float,
        clock: Callable[[], datetime] = utc_now,
        writes: WriteLog | None = None,
    ) -> None:
        self.store, self.events, self.clock = store, events, clock
        self.writes = writes or WriteLog(store.kv)
        """What KV ``jobs`` stored, read with the replica's other sweeps (its own when none is given)."""
        self.writes.add(self._on_write)
        self.after = timedelta(seconds=republish_after_s)
        self.candidates: dict[str, tuple[str, str, datetime]] = {}
        self.republished = 0
        self.confirmed = 0

    def on_record(self, record: JobRecord) -> None:
        """A record changed in KV: remember it while it is ``created``."""
        self._note(record.tenant, record.id, record.created_at if record.status is JobStatus.CREATED else None)

    def _note(self, tenant: str, job_id: str, created_since: datetime | None) -> None:
        key = tenant_key(tenant, job_id)
        if created_since is not None:
            self.candidates.setdefault(key, (tenant, job_id, created_since))
        else:
            self.candidates.pop(key, None)

    async def scan(self) -> int:
        """Learn from every write KV ``jobs`` stored since the last scan (of this or a sweep sharing its
        :class:`~services.dispatcher.kv_writes.WriteLog`, which learnt for it; the first: every record as
        it stands), in order; how many were read."""
        return await self.writes.read()

    def _on_write(self, key: str, msg: Msg) -> None:
        tenant, _, job_id = key.partition(".")
        created = not (msg.headers or {}).get(KV_OP) and CREATED in msg.data
        self._note(tenant, job_id, msg.metadata.timestamp if created else None)

    async def sweep(self) -> list[str]:
        """:meth:`scan`, then publish ``job.created`` for every due candidate the stream lacks; their job ids."""
        await self.scan()
        now, published = self.clock(), []
        for key, (tenant, job_id, created_at) in list(self.candidates.items()):
            if now - created_at < self.after:
                continue
            try:
                record, _ = await self.store.get(tenant, job_id)
            except UnreadableRecordError as exc:  # not a job that can be created: nothing to publish
                log.error("job %s: %s; no job.created published", job_id, exc, extra={"job_id": job_id})
                record = None
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
