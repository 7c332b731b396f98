"""Artifact retention: past ``artifact_retention_hours`` after a job ended, its results go.

:meth:`Retention.sweep` walks KV ``jobs``; for every ended job past the retention whose artifacts
are not yet expired it deletes the job's results prefix (``{prefix}results/{tenant}/{job_id}/``)
with ``storage.delete_prefix`` and flags its artifacts expired with compare-and-set. Both steps are
idempotent, so replicas may sweep at once and a sweep cut short is finished by the next. The
clock is injectable for tests. Expiry is the one change to a record that is not an event: it is
a function of the clock, and a rebuild from the stream re-applies it with the same rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from nats.js.kv import KeyValue

from contracts.envelope import utc_now
from contracts.job_record import JobRecord
from contracts.record_repair import UnreadableRecordError
from services.common.nats.kv import kv_entries
from services.common.storage import Storage, results_prefix
from services.dispatcher.store import JobStore

log = logging.getLogger(__name__)


def is_due(record: JobRecord, now: datetime, retention: timedelta) -> bool:
    """Whether ``record`` ended more than ``retention`` ago and still has live artifacts."""
    ended = record.timings.finished_at
    live = any(not a.expired for a in record.artifacts)
    return record.terminal and ended is not None and live and now - ended >= retention


class Retention:
    """Deletes the results of jobs past the artifact retention."""

    def __init__(
        self,
        kv: KeyValue,
        store: JobStore,
        storage: Storage,
        retention_hours: float,
        storage_prefix: str = "",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.kv, self.store, self.storage = kv, store, storage
        self.retention = timedelta(hours=retention_hours)
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
            if record is None or not is_due(record, now, self.retention):
                return False
            deleted = await self.storage.delete_prefix(results_prefix(self.storage_prefix, tenant, job_id))
            if await self.store.write(record.with_artifacts_expired(at=now), revision):
                log.info("job results expired", extra={"job_id": job_id, "objects": deleted})
                return True
        return False
