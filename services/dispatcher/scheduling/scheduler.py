"""One decision per slot: which queued attempt a dispatch ticket (a slot token) runs.

A kind's tickets are delivered by its durable consumer (``max_ack_pending`` = the kind's
concurrency), so holding one *is* holding a slot, across every replica, kept by the server. The
ticket's own job does not decide what runs: :meth:`Scheduler.take` picks the attempt that fills the
slot by fair share (:mod:`services.dispatcher.scheduling.fair`) among the kind's unclaimed, due entries of the
queue index (:mod:`services.dispatcher.scheduling.queue`) and claims it by compare-and-set, so two replicas
never claim one attempt. Every attempt has its own ticket; a ticket that finds nothing due to claim
(its job was taken by another ticket, is not due yet, or waits on a quota) is acked at once, never
nak'ed (a nak'ed message keeps its slot until redelivered), and :meth:`Scheduler.top_up` gives
each due entry that lacks a ticket one, every ``queue_sweep_interval_s``.

A redelivered ticket (its holder died, or nak'ed) finds the entry it claimed (``claimed_by`` = its
stream sequence) and runs or adopts that attempt, as before; the kind is re-read first, so a mirror that
has not seen the claim yet (its watch lagging after an outage) does not make it claim a second entry.
Should the re-read lag too (its listing served by a replica still catching up), a redelivered ticket
that loses an entry's claim reads that entry from the bucket's leader: the winner may be its own claim.
The SFQ clock of each kind is one KV ``dispatch_fair`` key, read from this replica's watched view of it
and moved by compare-and-set after each claim, in the background (:mod:`services.dispatcher.scheduling.fair_clock`).

Two replicas holding a ticket each at once both pick the same head and race for it; the one that
loses picks again at once, without that entry (whoever changed it claimed or dropped it; the watch
brings its new state), rather than reading it from KV first.

A decision reads only the head of each tenant's line (the first entry that is due, not lost in a
race and not held back by a concurrency key): the index keeps the lines sorted
(:mod:`~services.dispatcher.scheduling.lines`), so its cost grows with the tenants waiting, not with the
entries queued (only entries not yet due, a backoff or a ``due_at``, are stepped over).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from nats.js import JetStreamContext

from services.common.quotas import QuotaBook
from services.dispatcher.job_events import JobEvents
from services.dispatcher.scheduling.fair import Candidate, pick, pick_oldest
from services.dispatcher.scheduling.fair_clock import FairClocks
from services.dispatcher.scheduling.queue import QueueIndex
from services.dispatcher.scheduling.queue_entries import QueueEntry
from services.dispatcher.scheduling.tallies import Tallies


def _key_full(candidate: Candidate, per_key: Counter[tuple[str, str]], limit: int) -> bool:
    """Whether ``candidate``'s concurrency key already runs ``limit`` attempts."""
    key = cast(tuple[QueueEntry, int], candidate.extra)[0].concurrency_key
    return key is not None and per_key[candidate.tenant, key] >= limit


def _subject_full(candidate: Candidate, per_subject: Counter[tuple[str, str]], limit: int | None) -> bool:
    """Whether ``candidate``'s end user (``subject``) already runs ``limit`` attempts of the kind."""
    subject = cast(tuple[QueueEntry, int], candidate.extra)[0].subject
    return limit is not None and subject is not None and per_subject[candidate.tenant, subject] >= limit


CLAIM_ATTEMPTS = 20
DECISIONS_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class Decision:
    """What a ticket does: run ``entry`` (claimed at ``revision``), or nothing (it is acked)."""

    entry: QueueEntry | None = None
    revision: int = 0
    fresh: bool = False
    """Claimed just now: the entry was unclaimed, so no token has launched this attempt before."""


class Scheduler:
    """Fills free slots from the queue index by weighted fair share and priority with ageing."""

    def __init__(
        self,
        queue: QueueIndex,
        clocks: FairClocks,
        weights: Mapping[str, float],
        default_weight: float,
        ageing_s: float,
        quotas: QuotaBook,
        tallies: Tallies,
        policy: str = "fair",
    ) -> None:
        self.queue, self.clocks, self.quotas = queue, clocks, quotas
        self.tallies, self.policy = tallies, policy
        self.decision_ms: deque[float] = deque(maxlen=DECISIONS_KEPT)
        """How long each claiming decision took (ticket in → attempt claimed), the latest ones."""
        self.weights, self.default_weight, self.ageing_s = weights, default_weight, ageing_s
        self.on_start: Callable[[str, str], None] = lambda kind, tenant: None
        """Called after each claim with the kind and tenant (queue positions move)."""

    def weight(self, tenant: str) -> float:
        """The tenant's share weight."""
        return float(self.weights.get(tenant, self.default_weight))

    async def take(self, kind: str, seq: int, redelivered: bool = False) -> Decision:
        """The attempt token ``seq`` of ``kind`` runs: the one it claimed before, else a fair pick.

        A ``redelivered`` token may have claimed an entry on an earlier delivery, here or on another
        replica, whose claim this mirror has not seen yet (its watch lagging after an outage): the kind
        is re-read before a fair pick, or the token would claim a second entry and leave the first
        claimed by a token that never comes again (the top-up gives tickets to unclaimed entries only).
        """
        held = self.queue.held_by(kind, seq)
        if held is not None:
            return Decision(held[0], held[1])
        began = time.perf_counter()
        decision = await self._decide(kind, seq, redelivered)
        if decision.entry is not None:
            self.decision_ms.append((time.perf_counter() - began) * 1000)
        return decision

    async def _decide(self, kind: str, seq: int, redelivered: bool) -> Decision:
        lost: set[str] = set()
        for round_ in range(CLAIM_ATTEMPTS):
            if round_ == 0 and (redelivered or not self._waiting(kind)):
                await self.queue.reload_kind(kind)  # the mirror may lag the bucket
                if (held := self.queue.held_by(kind, seq)) is not None:
                    return Decision(held[0], held[1])
            state, _ = await self.clocks.state(kind)
            allowed, weights = await self._heads(kind, lost)
            chosen = pick_oldest(allowed) if self.policy == "fifo" else pick(allowed, state, weights, self.ageing_s)
            if chosen is None:
                return Decision()
            entry, entry_revision = cast(tuple[QueueEntry, int], chosen.extra)
            claimed = await self.queue.claim(entry, entry_revision, seq)
            if claimed is not None:
                self.clocks.charge_soon(kind, entry.tenant, weights.get(entry.tenant) or self.weight(entry.tenant))
                self.on_start(kind, entry.tenant)
                return Decision(*claimed, fresh=True)
            if redelivered:  # it may have lost to its own claim, which the re-read kind lacked (a lagging replica)
                await self.queue.reload(entry.key)
                if (held := self.queue.held_by(kind, seq)) is not None:
                    return Decision(held[0], held[1])
            lost.add(entry.key)
        return Decision()  # lost every race: the top-up gives the entries another ticket

    def finished(self, entry: QueueEntry | None, seconds: float, succeeded: bool) -> None:
        """An attempt held ``seconds`` of GPU: count it to its tenant's day; a success's run time feeds
        the ETA (both written with the replica's next :meth:`~services.dispatcher.scheduling.tallies.Tallies.flush`)."""
        if entry is not None:
            self.tallies.add(entry, seconds, succeeded)

    async def release(self, entry: QueueEntry, revision: int) -> bool:
        """The attempt ended (or was stale): drop its entry (only the one this token claimed); ``False``
        when the entry moved on from ``revision``."""
        return await self.queue.remove(entry.key, revision)

    def _waiting(self, kind: str) -> bool:
        return bool(self.queue.lines.tenants(kind))

    async def shortfall(self, kind: str, due: dict[str, list[Candidate]], undelivered: int, unacked: int) -> int:
        """How many tickets ``kind`` lacks: its ``due`` entries (:meth:`_due`) no quota holds back, less
        the tickets not yet delivered and those delivered but holding no claim (never below 0)."""
        allowed, _ = await self._within_quotas(kind, due)
        waiting = sum(len(candidates) for candidates in allowed.values())
        claimed = sum(1 for entry in self.queue.running() if entry.kind == kind)
        return max(0, waiting - undelivered - max(0, unacked - claimed))

    async def top_up(self, js: JetStreamContext, stream: str, kinds: Iterable[str], events: JobEvents) -> int:
        """Publish the tickets each kind lacks (:meth:`shortfall`); how many. Every replica runs it
        every ``queue_sweep_interval_s``: a spare ticket is harmless, a missing one would strand a job.
        A kind with nothing due lacks no ticket, so its consumer is not asked (an idle stack asks nothing)."""
        published = 0
        for kind in kinds:
            due = self._due(kind)
            if not due:
                continue
            info = await js.consumer_info(stream, f"dispatch-{kind}")
            missing = await self.shortfall(kind, due, info.num_pending or 0, info.num_ack_pending or 0)
            if missing and due:
                sample = cast(tuple[QueueEntry, int], next(iter(due.values()))[0].extra)[0]
                await events.top_up(sample.ticket(), missing)
                published += missing
        return published

    def _due(self, kind: str) -> dict[str, list[Candidate]]:
        """The unclaimed entries that may start now, by tenant (the top-up counts them)."""
        now, due = time.time(), defaultdict[str, list[Candidate]](list)
        for entry, revision in self.queue.entries(kind):
            if entry.claimed_by is not None or entry.not_before > now:
                continue
            extra = (entry, revision)
            due[entry.tenant].append(Candidate(entry.key, entry.tenant, entry.priority, entry.enqueued_at, extra))
        return dict(due)

    async def _heads(self, kind: str, excluding: set[str]) -> tuple[dict[str, list[Candidate]], dict[str, float]]:
        """Each tenant's first entry of ``kind`` that may start now (due, not ``excluding``, within its
        quotas) and the tenants' weights: what :meth:`_within_quotas` keeps of :meth:`_due`, but only the
        head of each tenant's line, the one :func:`~services.dispatcher.scheduling.fair.pick` would take."""
        now, (per_kind, per_key, per_subject) = time.time(), self._running_counts(kind)
        allowed, weights = {}, {}
        for tenant in self.queue.lines.tenants(kind):
            weights[tenant], limit, subject_limit = await self._quota(tenant, per_kind)
            if limit is None:
                continue
            for entry in self.queue.lines.line(kind, tenant):
                if entry.not_before > now or entry.key in excluding:
                    continue
                revision = self.queue.revision(entry.key) or 0
                candidate = Candidate(entry.key, tenant, entry.priority, entry.enqueued_at, (entry, revision))
                if not _key_full(candidate, per_key, limit) and not _subject_full(
                    candidate, per_subject, subject_limit
                ):
                    allowed[tenant] = [candidate]
                    break
        return allowed, weights

    async def _within_quotas(
        self, kind: str, due: dict[str, list[Candidate]]
    ) -> tuple[dict[str, list[Candidate]], dict[str, float]]:
        """The due candidates no quota holds back (running per kind, per concurrency key, per subject), and
        the tenants' weights (KV ``quotas`` over ``tenant_weights``)."""
        per_kind, per_key, per_subject = self._running_counts(kind)
        allowed, weights = {}, {}
        for tenant, candidates in due.items():
            weights[tenant], limit, subject_limit = await self._quota(tenant, per_kind)
            kept = (
                [
                    c
                    for c in candidates
                    if not _key_full(c, per_key, limit) and not _subject_full(c, per_subject, subject_limit)
                ]
                if limit is not None
                else []
            )
            if kept:
                allowed[tenant] = kept
        return allowed, weights

    def _running_counts(self, kind: str) -> tuple[Counter[str], Counter[tuple[str, str]], Counter[tuple[str, str]]]:
        """The attempts running now: of ``kind`` per tenant, per tenant and concurrency key, and of ``kind``
        per tenant and subject."""
        running = self.queue.running()
        per_kind = Counter(e.tenant for e in running if e.kind == kind)
        per_key = Counter((e.tenant, e.concurrency_key) for e in running if e.concurrency_key is not None)
        per_subject = Counter((e.tenant, e.subject) for e in running if e.kind == kind and e.subject is not None)
        return per_kind, per_key, per_subject

    async def _quota(self, tenant: str, per_kind: Counter[str]) -> tuple[float, int | None, int | None]:
        """``tenant``'s weight (KV ``quotas`` over ``tenant_weights``), its concurrency key limit (``None``
        when its running attempts of the kind are at its quota) and its per-subject running limit."""
        quota = await self.quotas.quota(tenant)
        weight = quota.weight or self.weight(tenant)
        if quota.max_running_per_kind is not None and per_kind[tenant] >= quota.max_running_per_kind:
            return weight, None, quota.subject_max_running_per_kind
        return weight, quota.concurrency_key_limit or 1, quota.subject_max_running_per_kind
