"""Fair share between tenants and priority with ageing within one: the pure part of a decision.

Across tenants: *start-time fair queueing* (SFQ) with one unit of service per start. Each kind keeps
a virtual time ``v`` (the start tag of the latest start) and, per tenant, the finish tag ``F`` of
its latest start. A tenant with queued work would start at ``S = max(v, F)``; the tenant with the
smallest ``S`` fills the free slot and its ``F`` becomes ``S + 1/weight``. A tenant that has been
idle starts at ``v`` (it banks no credit), a backlogged one advances by ``1/weight`` per start, so
backlogged tenants' starts are in the ratio of their weights (3:1 weights → 3 starts to 1).

Within a tenant: the job with the smallest ``enqueued_at - priority × ageing_s`` goes first. That is
*linear ageing* with a static key: a job's effective priority grows by one level per ``ageing_s``
waited, so a priority-9 job overtakes priority-5 jobs queued up to ``4 × ageing_s`` earlier, never
older ones, and no job waits behind higher priorities forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_PRIORITY = 5
"""A spec's priority when it names none (0 lowest … 9 highest)."""


class FairState(BaseModel):
    """One kind's SFQ clock: ``v`` and each tenant's latest finish tag (those ≤ ``v`` are dropped)."""

    model_config = ConfigDict(extra="forbid")

    v: float = 0.0
    finish: dict[str, float] = Field(default_factory=dict)

    def start_tag(self, tenant: str) -> float:
        """When ``tenant``'s next job would start in virtual time."""
        return max(self.v, self.finish.get(tenant, 0.0))

    def charged(self, tenant: str, weight: float) -> FairState:
        """The state after one start of ``tenant`` (weight > 0)."""
        start = self.start_tag(tenant)
        finish = {t: f for t, f in self.finish.items() if f > start} | {tenant: start + 1.0 / weight}
        return FairState(v=start, finish=finish)

    def only_shifted_by(self, tenant: str, weight: float) -> bool:
        """Whether a start of ``tenant`` would only move every tag by the same amount: the clock holds
        ``tenant``'s finish tag alone, one start past ``v`` (a tenant running alone). :func:`pick`
        compares tags, never their values, so every later decision is the same on either clock, and
        such a start need not be written."""
        return self.finish == {tenant: self.v + 1.0 / weight}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A queued job as the scheduler sees it."""

    key: str
    tenant: str
    priority: int
    enqueued_at: float
    extra: object = field(default=None, compare=False)

    def order(self, ageing_s: float) -> tuple[float, float]:
        """Its place in its tenant's queue (smaller first)."""
        return ageing_order(self.enqueued_at, self.priority, ageing_s)


def ageing_order(enqueued_at: float, priority: int, ageing_s: float) -> tuple[float, float]:
    """A job's place in its tenant's queue (smaller first): linear ageing, then submission time."""
    return (enqueued_at - priority * ageing_s, enqueued_at)


def pick_oldest(by_tenant: Mapping[str, Iterable[Candidate]]) -> Candidate | None:
    """The longest-waiting candidate of any tenant: first come, first served (``scheduling_policy=fifo``)."""
    return min((c for cs in by_tenant.values() for c in cs), key=lambda c: (c.enqueued_at, c.key), default=None)


def pick(
    by_tenant: Mapping[str, Iterable[Candidate]],
    state: FairState,
    weights: Mapping[str, float],
    ageing_s: float,
) -> Candidate | None:
    """The candidate that fills the next slot: the head of the tenant with the smallest start tag
    (ties: the longer-waiting head); ``None`` when there is none."""
    best: tuple[float, float, float, str] | None = None
    chosen: Candidate | None = None
    for tenant, candidates in by_tenant.items():
        head = min(candidates, key=lambda c: c.order(ageing_s), default=None)
        if head is None or weights.get(tenant, 1.0) <= 0:
            continue
        rank = (state.start_tag(tenant), *head.order(ageing_s), tenant)
        if best is None or rank < best:
            best, chosen = rank, head
    return chosen
