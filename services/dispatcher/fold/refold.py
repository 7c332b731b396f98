"""Jobs folded again from their history in JOBS, after one of their events came to the fold again.

A batch folds each job's events in stream order, but a redelivered event can come after later events
of its job were folded: a batch given back whose nak the server took late (while the open pull
delivered what came next), a delivery lost with a connection, a new holder that stopped waiting for a
dead one's leftovers. Folded then, it may change nothing that it should (a ``job.started`` after the
job's ``job.succeeded``), and KV keeps a record that is not the fold of the stream, for good once the
record is terminal: the audit does not look at those. So each job with a redelivered event in a batch
is handed to :class:`Refolds`, which folds it again from nothing once the batch is done: a record that
differs is written (compare-and-set) and the reactions of its history run again, as the audit's repair
does (each checks the record and publishes with a deterministic id).

It runs beside the partitions, not in the batch: its reads must not take a batch past its deadline (a
batch given back is redelivered, and would be refolded again), and on a slow link a job's history is a
few round trips. Redeliveries come only after a fault, so a healthy run reads nothing here. A waiting
job is marked in KV ``fold_refolds`` (key ``{tenant}.{job_id}``) before the batch that asked is acked
(a mark that cannot be written fails the batch: it is given back, and comes again), and the mark is
deleted once the job is folded again; a replica reads the marks as it starts, so the jobs a stopped or
dead replica left waiting are folded again by the next one to start (another replica's jobs too: a
refold twice writes once). The jobs waiting are bounded (``fold_refolds_waiting``; past it a job is
neither marked nor kept, and logged: the audit still looks at it unless it is terminal), and a refold
that fails is tried again after :data:`RETRY_S` until it is done, for :data:`GIVE_UP_S` at most (then
dropped, and logged as an error: its mark is left). Each replica also reads the marks again every
``fold_refold_marks_every_s`` and takes those it does not hold: a mark left by a replica that died and
never started again, or by a refold given up, is folded again by a replica still running (a refold twice
writes once), not a day later when the bucket forgets it.

A mark is written with compare-and-set on the key's last revision (made, or written over the mark or
delete it finds), never a plain put: a write that timed out may still reach the bucket later (its
server paused, then back: a netfaults run's replica failed over while its put sat in the paused
server's socket), after the refold it asked for had ended and deleted the mark. Written so, it is
refused then; a plain put stored it, and the job stayed marked until the next read of the marks. A
delete of the mark that stays in flight (:class:`~services.common.nats.kv_writes.WriteInFlight`) is a failure
of the refold, tried again: a delete that never lands left the mark too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import NamedTuple

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.envelope import EventEnvelope
from contracts.ids import tenant_key
from contracts.job_record import JobRecord
from services.common.http.nats_failover import unwatched
from services.common.nats.kv import kv_last, kv_scan
from services.common.nats.kv_writes import kv_delete, kv_write
from services.common.observability.metrics import FOLD_REPAIRS
from services.dispatcher.fold.history import job_history
from services.dispatcher.fold.reactions import REACTS_TO, Reactions
from services.dispatcher.fold.records import fold
from services.dispatcher.store import CAS_ATTEMPTS

log = logging.getLogger(__name__)
RETRY_S = 1.0
"""How long a refold that failed (NATS away) waits before it is tried again."""
GIVE_UP_S = 600.0
"""How long a job's refold is tried again, from when it was first asked for."""
MARKS_EVERY_S = 300.0
"""How often a running replica reads the marks again (``fold_refold_marks_every_s``)."""


class _Waiting(NamedTuple):
    asked: float
    """When its refold was first asked for (``loop.time()``)."""
    mark: int | None
    """The revision of its mark in KV ``fold_refolds`` (``None``: not marked)."""


def _job_of(mark: str) -> tuple[str, str]:
    """The (tenant, job id) a mark's key ``{tenant}.{job_id}`` names."""
    tenant, job_id = mark.split(".", 1)
    return tenant, job_id


class Refolds:
    """The jobs waiting to be folded again, and the loop (:meth:`run`) that does it, oldest first."""

    def __init__(
        self,
        reactions: Reactions,
        max_events: int,
        most_waiting: int,
        failed: Callable[[], None] = unwatched,
        marks: KeyValue | None = None,
        marks_every_s: float = MARKS_EVERY_S,
    ) -> None:
        self.reactions, self.max_events, self.most_waiting = reactions, max_events, most_waiting
        self.marks_every_s = marks_every_s
        self.failed = failed
        """Told of each refold that failed (the replica's stuck-server watch)."""
        self.marks = marks
        """KV ``fold_refolds``, where each waiting job is marked (``None``: nowhere, in tests)."""
        self._waiting: dict[tuple[str, str], _Waiting] = {}
        """(tenant, job id) → when its refold was asked for, and its mark."""
        self._wake = asyncio.Event()
        self.refolded = 0
        """Records written back as the fold of their job's history."""
        self.left = 0
        """Jobs dropped because :attr:`most_waiting` were waiting."""
        self.reads = 0
        """Times the marks in KV were read."""

    async def add(self, tenant: str, job_id: str) -> None:
        """Fold ``job_id`` again soon (once however often it is added before then), marked in KV first:
        raises if the mark cannot be written (the caller's batch is then given back)."""
        if (tenant, job_id) in self._waiting:
            return
        if len(self._waiting) >= self.most_waiting:
            self.left += 1
            log.warning("job %s: %d jobs already wait to be folded again; dropped", job_id, self.most_waiting)
            return
        mark = None if self.marks is None else await self._mark(tenant_key(tenant, job_id))
        self._waiting.setdefault((tenant, job_id), _Waiting(asyncio.get_running_loop().time(), mark))
        self._wake.set()

    async def _mark(self, key: str) -> int:
        """Mark ``key`` (its revision), compare-and-set on the revision read first (see the module docstring)."""
        assert self.marks is not None
        for _ in range(CAS_ATTEMPTS):
            last = await kv_last(self.marks, key)  # None: never written, or deleted (made again)
            written = await kv_write(self.marks, key, b"", last.revision if last else None)
            if written is not None:
                return written
        raise RuntimeError(f"{key}: marked by others each time it was marked")

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def run(self) -> None:
        """Fold again the jobs marked in KV (left by a replica that stopped), then each waiting job, until
        cancelled; the marks are read again every :attr:`marks_every_s`."""
        loop = asyncio.get_running_loop()
        await self._read_marks(until_read=True)
        next_read = loop.time() + self.marks_every_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_read - loop.time())):
                    await self._wake.wait()
            if loop.time() >= next_read:
                await self._read_marks(until_read=False)
                next_read = loop.time() + self.marks_every_s
            self._wake.clear()
            while self._waiting:
                key = tenant, job_id = next(iter(self._waiting))
                try:
                    await self.refold(tenant, job_id)
                    await self._unmark(key)
                except Exception as exc:  # noqa: BLE001 - NATS away: tried again, after the others
                    self.failed()
                    waiting = self._waiting.pop(key)
                    if asyncio.get_running_loop().time() - waiting.asked >= GIVE_UP_S:
                        log.error(
                            "job %s: could not be folded again for %g s (%r); given up here (its mark is read again "
                            "by the next replica to start)", job_id, GIVE_UP_S, exc,
                        )  # fmt: skip
                        continue
                    log.warning("job %s: could not be folded again (%r); trying again in %g s", job_id, exc, RETRY_S)
                    self._waiting[key] = waiting  # after the others
                    await asyncio.sleep(RETRY_S)

    async def _read_marks(self, until_read: bool) -> None:
        """Take in the jobs marked in KV that do not wait here already (as many as may wait: the rest stay
        marked for a later read), tried until they are read when ``until_read`` (at the start), else once."""
        while self.marks is not None:
            try:
                marked = await kv_scan(self.marks, ">")
            except Exception as exc:  # noqa: BLE001 - NATS away: tried again, now or at the next read
                self.failed()
                log.warning("the jobs marked to be folded again could not be read (%r)", exc)
                if not until_read:
                    return
                await asyncio.sleep(RETRY_S)
                continue
            self.reads += 1
            now = asyncio.get_running_loop().time()
            new = [(key, item.revision) for item in marked if (key := _job_of(item.key)) not in self._waiting]
            taken = new[: max(0, self.most_waiting - len(self._waiting))]
            for key, revision in taken:
                self._waiting[key] = _Waiting(now, revision)
            if new:
                log.warning("%d jobs were marked to be folded again by a replica that stopped or gave up; %d taken",
                            len(new), len(taken))  # fmt: skip
                self._wake.set()
            return

    async def _unmark(self, key: tuple[str, str]) -> None:
        """The job is folded again: forget it, and its mark unless it was marked again since."""
        waiting = self._waiting[key]
        if self.marks is not None and waiting.mark is not None:
            # marked again (another replica had the job redelivered), or being marked: it deletes the mark;
            # a delete that stays in flight (WriteInFlight) is raised: the refold is tried again
            with contextlib.suppress(KeyWrongLastSequenceError):
                await kv_delete(self.marks, tenant_key(*key), waiting.mark)
        del self._waiting[key]

    async def refold(self, tenant: str, job_id: str) -> bool:
        """Write the job's record as the fold of its events if it differs (compare-and-set, read again on
        a conflict), then run its history's reactions; whether it was written."""
        store = self.reactions.store
        for _ in range(CAS_ATTEMPTS):
            record, revision = await store.get(tenant, job_id)
            if record is None:
                return False
            events = await job_history(store.kv._js, self.reactions.events.ns, tenant, job_id, self.max_events)
            if events is None:
                log.warning("job %s has more than %d events; not folded again", job_id, self.max_events)
                return False
            folded = fold(events, store.pricing)
            if folded is None or folded == record:
                return False
            if await write_back(
                self.reactions, folded, revision, events, functools.partial(self._rewritten, record, folded, events)
            ):
                return True
            # the fold wrote it meanwhile: read it again
        raise RuntimeError(f"job {job_id}: too many concurrent updates")

    def _rewritten(self, record: JobRecord, folded: JobRecord, events: list[EventEnvelope]) -> None:
        self.refolded += 1
        log.warning(
            "job %s: folded again after a redelivery: its record (%s) differed from the fold of its %d events "
            "(%s); rewritten",
            record.id, record.status, len(events), folded.status, extra={"job_id": record.id},
        )  # fmt: skip


def latest_reacting(events: list[EventEnvelope]) -> dict[str, EventEnvelope]:
    """The last event of each type that has a reaction, of a job's ``events``."""
    return {event.type: event for event in events if event.type in REACTS_TO}


async def write_back(
    reactions: Reactions,
    folded: JobRecord,
    revision: int | None,
    events: list[EventEnvelope],
    written: Callable[[], None],
) -> bool:
    """Write ``folded``, the fold of a job's ``events``, over the record at ``revision`` (compare-and-set);
    once written, tell ``written`` and count it in ``gpurelay_fold_repairs`` before the reactions of its
    history run (they move the record on: whoever waits for that finds the repair counted); whether it
    was written (not: another write came first)."""
    if await reactions.store.put(folded, revision) is None:
        return False
    written()
    FOLD_REPAIRS.inc()
    for event in latest_reacting(events).values():
        await reactions.react(event, folded)
    return True
