"""One decision per slot: which queued attempt a dispatch ticket (a slot token) runs.

A kind's tickets are delivered by its durable consumer (``max_ack_pending`` = the kind's
concurrency), so holding one *is* holding a slot, across every replica, kept by the server. The
ticket's own job does not decide what runs: :meth:`Scheduler.take` picks the attempt that fills the
slot by fair share (:mod:`services.dispatcher.fair`) among the kind's unclaimed, due entries of the
queue index (:mod:`services.dispatcher.queue`) and claims it by compare-and-set, so two replicas
never claim one attempt. Every attempt has its own ticket, so tickets and entries balance: a ticket
that finds nothing left to claim (its job was taken by another ticket) is simply acked.

A redelivered ticket (its holder died, or nak'ed) finds the entry it claimed (``claimed_by`` = its
stream sequence) and runs or adopts that attempt, as before. The SFQ clock of each kind is one
KV ``dispatch_fair`` key, moved by compare-and-set after each claim.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.dispatcher.fair import Candidate, FairState, pick
from services.dispatcher.queue import QueueEntry, QueueIndex
from services.dispatcher.store import CAS_ATTEMPTS

log = logging.getLogger(__name__)
CLAIM_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class Decision:
    """What a ticket does: run ``entry`` (claimed at ``revision``), wait ``wait_s`` (nak), or nothing."""

    entry: QueueEntry | None = None
    revision: int = 0
    wait_s: float = 0.0


class Scheduler:
    """Fills free slots from the queue index by weighted fair share and priority with ageing."""

    def __init__(
        self, queue: QueueIndex, fair_kv: KeyValue, weights: Mapping[str, float], default_weight: float, ageing_s: float
    ) -> None:
        self.queue, self.fair_kv = queue, fair_kv
        self.weights, self.default_weight, self.ageing_s = weights, default_weight, ageing_s

    def weight(self, tenant: str) -> float:
        """The tenant's share weight."""
        return float(self.weights.get(tenant, self.default_weight))

    async def take(self, kind: str, seq: int) -> Decision:
        """The attempt token ``seq`` of ``kind`` runs: the one it claimed before, else a fair pick."""
        held = self.queue.held_by(kind, seq)
        if held is not None:
            return Decision(held[0], held[1])
        for round_ in range(CLAIM_ATTEMPTS):
            if round_ == 0 and not self._waiting(kind):
                await self.queue.reload_kind(kind)  # the mirror may lag the bucket
                if (held := self.queue.held_by(kind, seq)) is not None:
                    return Decision(held[0], held[1])
            state, revision = await self._state(kind)
            due, wait_s = self._due(kind)
            chosen = pick(due, state, self._weights_of(due), self.ageing_s)
            if chosen is None:
                return Decision(wait_s=wait_s)
            entry, entry_revision = cast(tuple[QueueEntry, int], chosen.extra)
            claimed = await self.queue.claim(entry, entry_revision, seq)
            if claimed is not None:
                await self._charge(kind, entry.tenant, state, revision)
                return Decision(*claimed)
        return Decision(wait_s=0.05)  # lost every race: try again shortly

    async def release(self, entry: QueueEntry, revision: int) -> None:
        """The attempt ended (or was stale): drop its entry (only the one this token claimed)."""
        await self.queue.remove(entry.key, revision)

    def _waiting(self, kind: str) -> bool:
        return any(e.claimed_by is None for e, _ in self.queue.entries(kind))

    def _due(self, kind: str) -> tuple[dict[str, list[Candidate]], float]:
        """The unclaimed entries that may start now, by tenant; and how long until the next is due."""
        now, due, next_due = time.time(), defaultdict[str, list[Candidate]](list), float("inf")
        for entry, revision in self.queue.entries(kind):
            if entry.claimed_by is not None:
                continue
            if entry.not_before > now:
                next_due = min(next_due, entry.not_before - now)
                continue
            extra = (entry, revision)
            due[entry.tenant].append(Candidate(entry.key, entry.tenant, entry.priority, entry.enqueued_at, extra))
        return dict(due), (0.0 if next_due == float("inf") else next_due)

    def _weights_of(self, due: Mapping[str, object]) -> dict[str, float]:
        return {tenant: self.weight(tenant) for tenant in due}

    async def _state(self, kind: str) -> tuple[FairState, int | None]:
        try:
            got = await self.fair_kv.get(kind)
        except KeyNotFoundError:
            return FairState(), None
        return FairState.model_validate_json(got.value or b"{}"), got.revision

    async def _charge(self, kind: str, tenant: str, state: FairState, revision: int | None) -> None:
        """Advance the kind's SFQ clock by one start of ``tenant`` (re-read and re-applied on a conflict)."""
        for _ in range(CAS_ATTEMPTS):
            value = state.charged(tenant, self.weight(tenant)).model_dump_json().encode()
            try:
                if revision is None:
                    await self.fair_kv.create(kind, value)
                else:
                    await self.fair_kv.update(kind, value, last=revision)
                return
            except KeyWrongLastSequenceError:
                state, revision = await self._state(kind)
        log.warning("fair-share clock of %s not advanced: too many concurrent updates", kind)
