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
few round trips. Redeliveries come only after a fault, so a healthy run reads nothing here. The jobs
waiting are bounded (``fold_refolds_waiting``; past it a job is dropped, and logged: the audit still
looks at it unless it is terminal), and a refold that fails is tried again after :data:`RETRY_S` until
it is done, for :data:`GIVE_UP_S` at most (then dropped and logged as an error), or the dispatcher stops
(whose waiting jobs are dropped the same way).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from contracts.envelope import EventEnvelope
from contracts.job_record import JobRecord
from services.common.http.nats_failover import unwatched
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


class Refolds:
    """The jobs waiting to be folded again, and the loop (:meth:`run`) that does it, oldest first."""

    def __init__(
        self, reactions: Reactions, max_events: int, most_waiting: int, failed: Callable[[], None] = unwatched
    ) -> None:
        self.reactions, self.max_events, self.most_waiting = reactions, max_events, most_waiting
        self.failed = failed
        """Told of each refold that failed (the replica's stuck-server watch)."""
        self._waiting: dict[tuple[str, str], float] = {}
        """(tenant, job id) → when its refold was asked for (``loop.time()``)."""
        self._wake = asyncio.Event()
        self.refolded = 0
        """Records written back as the fold of their job's history."""
        self.left = 0
        """Jobs dropped because :attr:`most_waiting` were waiting."""

    def add(self, tenant: str, job_id: str) -> None:
        """Fold ``job_id`` again soon (once however often it is added before then)."""
        if (tenant, job_id) in self._waiting:
            return
        if len(self._waiting) >= self.most_waiting:
            self.left += 1
            log.warning("job %s: %d jobs already wait to be folded again; dropped", job_id, self.most_waiting)
            return
        self._waiting[(tenant, job_id)] = asyncio.get_running_loop().time()
        self._wake.set()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def run(self) -> None:
        """Fold the waiting jobs again until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                key = tenant, job_id = next(iter(self._waiting))
                try:
                    await self.refold(tenant, job_id)
                except Exception as exc:  # noqa: BLE001 - NATS away: tried again, after the others
                    self.failed()
                    asked = self._waiting.pop(key)
                    if asyncio.get_running_loop().time() - asked >= GIVE_UP_S:
                        log.error("job %s: could not be folded again for %g s (%r); given up", job_id, GIVE_UP_S, exc)
                        continue
                    log.warning("job %s: could not be folded again (%r); trying again in %g s", job_id, exc, RETRY_S)
                    self._waiting[key] = asked  # after the others
                    await asyncio.sleep(RETRY_S)
                    continue
                self._waiting.pop(key, None)

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
