"""Anti-entropy for the fold: job records that disagree with their stream, found and rewritten.

The fold keeps KV ``jobs`` equal to :func:`~services.dispatcher.fold.records.fold` of JOBS, but an event
that never reaches the fold (a batch acked without its write, a consumer made anew past it) leaves
a record behind for good: nothing redelivers it. :class:`FoldAudit` looks again at records that stopped
moving. At each sweep (every ``fold_audit_interval_s``) it reads what KV ``jobs`` stored since the last
one (:meth:`FoldAudit.scan`, :func:`~services.dispatcher.kv_writes.read_writes`) and keeps
the keys of records not terminal, with the time of their last write (at most ``fold_audit_candidates``,
the newest dropped first: they are the least overdue). Those unchanged for ``fold_audit_after_s`` are
audited, the oldest first, at most ``fold_audit_per_sweep`` a sweep: the job's events are read from
JOBS, folded, and when the fold differs from the record it is written with compare-and-set on the
revision read, then the reactions of the job's history run (each checks the record and publishes with
a deterministic id, so nothing is done twice). A record that agrees is never written; it is looked at
again only after another ``fold_audit_after_s`` without a write. One that agrees but still waits on a
reaction the fold missed (``created`` with its uploads complete, ``queued`` or ``retrying`` with no
queue entry for its attempt, a cancel request not acted on) gets it done again
(:meth:`~services.dispatcher.fold.reactions.Reactions.resume`): an event whose deliveries an outage used
up can be dead-lettered, and without its reaction the job would wait for ever.

Every replica may sweep: two audits of one record write it once (the second's compare-and-set fails)
and their reactions are idempotent. Each repair is logged as a warning and counted
(``gpurelay_fold_repairs``): it means the fold missed an event.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from nats.aio.msg import Msg
from nats.js.kv import KV_OP

from contracts.envelope import EventEnvelope, utc_now
from contracts.job_parts import TERMINAL
from contracts.job_record import JobRecord
from services.common.nats.connection import log_failure
from services.common.observability.metrics import FOLD_REPAIRS
from services.dispatcher.fold.history import job_history
from services.dispatcher.fold.reactions import Reactions
from services.dispatcher.fold.records import fold
from services.dispatcher.fold.refold import latest_reacting, write_back
from services.dispatcher.kv_writes import WriteLog
from services.dispatcher.store import JobStore

log = logging.getLogger(__name__)
ENDED = tuple(f'"status":"{status}"'.encode() for status in TERMINAL)
"""How a terminal record's status reads in its JSON (it is never audited)."""


class FoldAudit:
    """Finds unmoving records that differ from the fold of their events, and rewrites them."""

    def __init__(
        self,
        store: JobStore,
        reactions: Reactions,
        after_s: float,
        per_sweep: int,
        max_candidates: int,
        max_events: int,
        clock: Callable[[], datetime] = utc_now,
        writes: WriteLog | None = None,
    ) -> None:
        self.store, self.reactions, self.clock = store, reactions, clock
        self.writes = writes or WriteLog(store.kv)
        """What KV ``jobs`` stored, read with the replica's other sweeps (its own when none is given)."""
        self.writes.add(self._on_write)
        self.after, self.per_sweep = timedelta(seconds=after_s), per_sweep
        self.max_candidates, self.max_events = max_candidates, max_events
        self.candidates: dict[str, tuple[str, str, datetime]] = {}
        """KV key → (tenant, job id, the record's last write or audit)."""
        self.audited = 0
        self.repaired = 0

    async def scan(self) -> int:
        """Learn from every write KV ``jobs`` stored since the last scan (of this or a sweep sharing its
        :class:`~services.dispatcher.kv_writes.WriteLog`, which learnt for it: so the candidates may pass
        ``max_candidates`` until this scan; the first: every record as it stands); how many were read."""
        read = await self.writes.read()
        while len(self.candidates) > self.max_candidates:  # the newest go: they are the least overdue
            self.candidates.pop(next(reversed(self.candidates)))
        return read

    def _on_write(self, key: str, msg: Msg) -> None:
        self.candidates.pop(key, None)  # a write: its time starts again (at the end: newest)
        if not (msg.headers or {}).get(KV_OP) and not any(status in msg.data for status in ENDED):
            tenant, _, job_id = key.partition(".")
            self.candidates[key] = (tenant, job_id, msg.metadata.timestamp)

    async def sweep(self) -> list[str]:
        """:meth:`scan`, then audit the due candidates (oldest first, at most ``per_sweep``); the ids
        of the jobs repaired."""
        await self.scan()
        now = self.clock()
        due = [(key, tenant, job_id) for key, (tenant, job_id, since) in self.candidates.items()
               if now - since >= self.after][: self.per_sweep]  # fmt: skip
        repaired = []
        for key, tenant, job_id in due:
            self.candidates.pop(key, None)
            try:
                moved = await self.audit(tenant, job_id)
            except Exception as exc:  # noqa: BLE001 - one job's failure must not end the sweep
                why = "job %s: the fold audit failed; tried again later"
                log_failure(log, exc, why, job_id, extra={"job_id": job_id})
                moved = False
            self.candidates[key] = (tenant, job_id, now)  # looked at again after another ``after``
            if moved:
                repaired.append(job_id)
        return repaired

    async def audit(self, tenant: str, job_id: str) -> bool:
        """Rewrite one job's record as the fold of its events if it differs (compare-and-set), then run the
        reactions of its history; if it agrees, do a reaction it still waits on. Whether either was done."""
        record, revision = await self.store.get(tenant, job_id)
        if record is None or record.terminal:
            return False
        events = await self.events(tenant, job_id)
        if events is None:
            log.warning("job %s has more than %d events; not audited", job_id, self.max_events)
            return False
        self.audited += 1
        folded = fold(events, self.store.pricing)
        if folded == record:
            return await self._resume(record, latest_reacting(events), len(events))
        if folded is None:
            return False
        return await write_back(  # not written: it moved, the fold is at work on it
            self.reactions, folded, revision, events, functools.partial(self._rewritten, record, folded, events)
        )

    def _rewritten(self, record: JobRecord, folded: JobRecord, events: list[EventEnvelope]) -> None:
        self.repaired += 1
        log.warning(
            "job %s: its record (%s) differed from the fold of its %d events (%s); rewritten",
            record.id, record.status, len(events), folded.status, extra={"job_id": record.id},
        )  # fmt: skip

    async def _resume(self, record: JobRecord, latest: dict[str, EventEnvelope], events: int) -> bool:
        """The reaction an agreeing record still waits on, done again (:meth:`Reactions.resume`);
        whether there was one (counted as a repair: the fold missed it)."""
        done = await self.reactions.resume(record, latest)
        if done is None:
            return False
        self.repaired += 1
        FOLD_REPAIRS.inc()
        log.warning(
            "job %s: its record (%s) agreed with its %d events but waited on a reaction the fold missed; %s",
            record.id, record.status, events, done, extra={"job_id": record.id},
        )  # fmt: skip
        return True

    async def events(self, tenant: str, job_id: str) -> list[EventEnvelope] | None:
        """The job's events in JOBS, in stream order (``None``: more than ``max_events``)."""
        return await job_history(self.store.kv._js, self.reactions.events.ns, tenant, job_id, self.max_events)
