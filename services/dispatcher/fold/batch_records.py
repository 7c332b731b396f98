"""The job records a fold batch folds over: each job's run, its record kept, made or read, and written.

A job's events of a batch fold in order over its record (:class:`JobRun`), read once: from the records the
partition's holder kept under its pin (:class:`RecordCache`: only the holder writes its jobs, so while the
pin id lasts they are what KV holds), else from KV, or, at a new job's first delivered ``job.created``, not
at all: the event makes the record the gateway created, at the revision its header gives. The record is
written with compare-and-set on its revision; on a conflict it is read again and the run's events not
yet written are applied again (:class:`BatchRecords`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from nats.aio.msg import Msg

from contracts.envelope import EventEnvelope
from contracts.events.registry import CREATED_RECORD_REVISION, EventType
from contracts.job_record import JobRecord
from services.dispatcher.fold.records import apply
from services.dispatcher.store import CAS_ATTEMPTS, JobStore


class RecordCache:
    """The job records one partition's holder has read or written under one pin, with their revisions:
    the latest ``size`` (least recently used out first). Only the pin holder writes its jobs, so
    while the pin id lasts they are what KV holds; :meth:`reset` when it changes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pin: str | None = None
        self._records: OrderedDict[tuple[str, str], tuple[JobRecord, int]] = OrderedDict()

    def reset(self, pin: str | None) -> None:
        """Forget every record; keep records under ``pin`` from now on (``None``: keep none)."""
        self.pin = pin
        self._records.clear()

    def get(self, tenant: str, job_id: str) -> tuple[JobRecord, int] | None:
        """The record of a job and its revision, if kept."""
        found = self._records.get((tenant, job_id))
        if found is not None:
            self._records.move_to_end((tenant, job_id))
        return found

    def keep(self, record: JobRecord | None, revision: int | None) -> None:
        """Keep ``record`` at ``revision`` (nothing without a pin, a record or a revision)."""
        if self.size <= 0 or self.pin is None or record is None or revision is None:
            return
        self._records[record.tenant, record.id] = (record, revision)
        self._records.move_to_end((record.tenant, record.id))
        while len(self._records) > self.size:
            self._records.popitem(last=False)

    def drop(self, tenant: str, job_id: str) -> None:
        """Forget one job's record (it is read from KV next time)."""
        self._records.pop((tenant, job_id), None)


@dataclass
class JobRun:
    """One job's events of the batch, and its record as folded so far."""

    tenant: str
    job_id: str
    events: list[tuple[Msg, EventEnvelope]] = field(default_factory=list)
    record: JobRecord | None = None
    revision: int | None = None
    loaded: bool = False
    unwritten: list[EventEnvelope] = field(default_factory=list)


class BatchRecords:
    """The records of a batch's job runs: kept in ``cache``, else read from ``store``, and written back."""

    def __init__(self, store: JobStore, cache: RecordCache) -> None:
        self.store, self.cache = store, cache

    def take_created(self, run: JobRun, msg: Msg, event: EventEnvelope) -> None:
        """At a new job's ``job.created``, first delivered, its record as the gateway created it (the event
        makes it; the header has its revision) instead of reading it back. A later write of a record that
        moved meanwhile fails its compare-and-set and reads it then."""
        revision = (msg.headers or {}).get(CREATED_RECORD_REVISION, "")
        if run.loaded or run.unwritten or event.type != EventType.JOB_CREATED or not revision.isdigit():
            return
        if msg.metadata.num_delivered != 1 or self.cache.get(run.tenant, run.job_id) is not None:
            return  # a redelivery: the first may have moved the record and reacted
        if (made := apply(None, event, self.store.pricing)) is None:
            return  # a payload this fold cannot read: the record it reads still gets its reaction
        run.record, run.revision, run.loaded = made, int(revision), True
        self.cache.keep(made, run.revision)

    def stale(self, run: JobRun) -> None:
        """The run's record may not be KV's: read it again before the next step."""
        run.loaded = False
        self.cache.drop(run.tenant, run.job_id)

    async def load(self, run: JobRun) -> None:
        """The record (kept, else read) with the run's events not yet written re-applied."""
        kept = self.cache.get(run.tenant, run.job_id)
        if kept is not None:
            run.record, run.revision = kept
        else:
            run.record, run.revision = await self.store.get(run.tenant, run.job_id)
            self.cache.keep(run.record, run.revision)
        for event in run.unwritten:
            run.record = apply(run.record, event, self.store.pricing)
        run.loaded = True

    async def flush(self, run: JobRun) -> None:
        """Write the record if events moved it (compare-and-set; on a conflict re-read and re-apply)."""
        for _ in range(CAS_ATTEMPTS):
            if not run.unwritten:
                return
            if not run.loaded:
                await self.load(run)
            if run.record is None:
                run.unwritten = []
                return
            revision = await self.store.put(run.record, run.revision)
            if revision is not None:
                run.revision, run.unwritten = revision, []
                self.cache.keep(run.record, revision)
                return
            self.stale(run)
        raise RuntimeError(f"job {run.job_id}: too many concurrent updates")
