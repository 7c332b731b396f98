"""Retention: past ``artifact_retention_hours`` after a job ended its results go; a session's recording
(``recording/`` in its results) goes past ``recording_retention_hours``, on its own clock.

:meth:`Retention.sweep` walks KV ``jobs``. For every ended job past the artifact retention whose
artifacts (or live snapshot) are not yet expired, it deletes the job's results
(``{prefix}results/{tenant}/{job_id}/``) with ``storage`` and flags them expired; a session's
recording is spared while its own retention runs. For every ended session past the recording
retention whose recording is not yet flagged, it deletes ``recording/`` and flags it
(``session.recording_expired``). Writes are compare-and-set and deletions idempotent, so replicas
may sweep at once and a sweep cut short is finished by the next. The clock is injectable for tests.
Expiry is the one change to a record that is not an event: it is a function of the clock, and a
rebuild from the stream re-applies it with the same rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from nats.js.kv import KeyValue

from contracts.envelope import utc_now
from contracts.job_record import JobRecord
from contracts.record_repair import UnreadableRecordError
from contracts.recordings.layout import RECORDING_DIR
from services.common.nats.kv import kv_entries
from services.common.storage import Storage, results_prefix
from services.dispatcher.store import JobStore

log = logging.getLogger(__name__)


def _ended_before(record: JobRecord, now: datetime, retention: timedelta) -> bool:
    ended = record.timings.finished_at
    return record.terminal and ended is not None and now - ended >= retention


def is_due(record: JobRecord, now: datetime, retention: timedelta) -> bool:
    """Whether ``record`` ended more than ``retention`` ago and still has live artifacts (or snapshot)."""
    snapshot = record.session.snapshot if record.session is not None else None
    live = any(not a.expired for a in record.artifacts) or (snapshot is not None and not snapshot.expired)
    return live and _ended_before(record, now, retention)


def recording_due(record: JobRecord, now: datetime, retention: timedelta) -> bool:
    """Whether ``record`` is a session that ended more than ``retention`` ago with its recording not yet removed."""
    return record.session is not None and not record.session.recording_expired and _ended_before(record, now, retention)


class Retention:
    """Deletes the results of jobs past the artifact retention, and sessions' recordings past theirs."""

    def __init__(
        self,
        kv: KeyValue,
        store: JobStore,
        storage: Storage,
        retention_hours: float,
        storage_prefix: str = "",
        clock: Callable[[], datetime] = utc_now,
        recording_retention_hours: float | None = None,
    ) -> None:
        self.kv, self.store, self.storage = kv, store, storage
        self.retention = timedelta(hours=retention_hours)
        self.recording_retention = timedelta(hours=recording_retention_hours or retention_hours)
        self.storage_prefix, self.clock = storage_prefix, clock

    async def sweep(self) -> list[str]:
        """Expire every job that is due; the ids of those expired in this sweep."""
        keys = [item.key for item in await kv_entries(self.kv, meta_only=True)]
        now, expired = self.clock(), []
        for key in keys:
            tenant, _, job_id = key.partition(".")
            try:
                if await self._expire(tenant, job_id, now):
                    expired.append(job_id)
            except UnreadableRecordError:  # one unreadable record does not stop the sweep
                log.error("KV jobs %s does not hold a job record; not swept", key)
        return expired

    async def _expire(self, tenant: str, job_id: str, now: datetime) -> bool:
        for _ in range(10):
            record, revision = await self.store.get(tenant, job_id)
            if record is None:
                return False
            results, recording = (
                is_due(record, now, self.retention),
                recording_due(record, now, self.recording_retention),
            )
            if not results and not recording:
                return False
            deleted = await self._delete(tenant, job_id, results=results, recording=recording)
            moved = record.with_artifacts_expired(at=now) if results else record
            moved = moved.with_recording_expired(at=now) if recording else moved
            if await self.store.write(moved, revision):
                log.info("job results expired", extra={"job_id": job_id, "objects": deleted, "recording": recording})
                return True
        return False

    async def _delete(self, tenant: str, job_id: str, *, results: bool, recording: bool) -> int:
        """Delete the job's results (a recording kept unless ``recording``), or just its recording."""
        base = results_prefix(self.storage_prefix, tenant, job_id)
        kept = f"{base}{RECORDING_DIR}/"
        if recording and results:
            return await self.storage.delete_prefix(base)
        if recording:
            return await self.storage.delete_prefix(kept)
        keys = [info.key async for info in self.storage.list(base) if not info.key.startswith(kept)]
        for key in keys:
            await self.storage.delete(key)
        return len(keys)
