"""The queue index's waiting lines (:mod:`services.dispatcher.scheduling.lines`): kept in start order through
any sequence of writes, claims and deletes, and a decision from the lines' heads picks what a
scan of every queued entry picks (fair share, quotas, concurrency keys, backoffs, lost races)."""

from __future__ import annotations

import random
import time

import pytest
from nats.js import JetStreamContext

from contracts import streams
from contracts.quotas import TenantQuota
from contracts.streams import Declarations
from contracts.subjects import Namespace
from services.common.quotas import QuotaBook
from services.dispatcher.scheduling.fair import FairState, pick, pick_oldest
from services.dispatcher.scheduling.fair_clock import FairClocks
from services.dispatcher.scheduling.lines import line_order
from services.dispatcher.scheduling.queue import QueueIndex
from services.dispatcher.scheduling.queue_entries import QueueEntry
from services.dispatcher.scheduling.run_times import RunTimes
from services.dispatcher.scheduling.scheduler import Scheduler
from services.dispatcher.scheduling.tallies import Tallies

TENANTS, KINDS, KEYS = ("acme", "globex", "initech"), ("pose", "splat"), (None, "cam-a", "cam-b")


def _random_entry(rng: random.Random, n: int, now: float) -> QueueEntry:
    return QueueEntry(
        tenant=rng.choice(TENANTS), job_id=f"j{rng.randrange(60)}", kind=rng.choice(KINDS), attempt=1,
        priority=rng.randrange(10), enqueued_at=now - 600 + n + rng.random() / 2,
        not_before=now + 30 if rng.random() < 0.2 else 0.0,
        claimed_by=rng.randrange(1, 500) if rng.random() < 0.3 else None, concurrency_key=rng.choice(KEYS),
    )  # fmt: skip


def _mutate(index: QueueIndex, rng: random.Random, n: int, now: float) -> None:
    """One write the mirror could see: a new or changed entry (a claim, a release), or a delete."""
    known = [key for entries in index.by_kind.values() for key in entries]
    if known and rng.random() < 0.25:
        index._forget(rng.choice(known))
        return
    entry = _random_entry(rng, n, now)
    current = index.by_kind[entry.kind].get(entry.key)
    if current is not None and rng.random() < 0.5:  # the same entry claimed or given back
        claimed = None if current[0].claimed_by is not None else rng.randrange(1, 500)
        entry = current[0].model_copy(update={"claimed_by": claimed})
    index._take(entry.key, entry.model_dump_json().encode(), n)


@pytest.mark.parametrize("policy", ["fair", "fifo"])
def test_every_line_is_its_tenants_unclaimed_entries_in_start_order(policy: str) -> None:
    order, rng, now = line_order(policy, 60.0), random.Random(7), time.time()
    index = QueueIndex(None, order)  # type: ignore[arg-type]  # the mirror alone: no KV is touched
    for n in range(1, 3000):
        _mutate(index, rng, n, now)
        if n % 50:
            continue
        for kind in KINDS:
            entries = [e for e, _ in index.entries(kind)]
            for tenant in TENANTS:
                waiting = [e for e in entries if e.tenant == tenant and e.claimed_by is None]
                expected = sorted(waiting, key=lambda e: (*order(e), e.key))
                assert list(index.lines.line(kind, tenant)) == expected
                assert [index.lines.position(e.key) for e in expected] == list(range(1, len(expected) + 1))
            assert set(index.lines.tenants(kind)) == {e.tenant for e in entries if e.claimed_by is None}
            for entry in entries:
                if entry.claimed_by is not None:
                    assert index.held_by(kind, entry.claimed_by) is not None
        running = {e.key for entries in index.by_kind.values() for e, _ in entries.values() if e.claimed_by}
        assert {e.key for e in index.running()} == running


@pytest.mark.parametrize("policy", ["fair", "fifo"])
async def test_a_decision_from_the_heads_picks_what_a_scan_of_every_entry_picks(
    js: JetStreamContext, declared: Declarations, namespace: Namespace, policy: str
) -> None:
    quotas = QuotaBook(
        await js.key_value(namespace.bucket(streams.KV_QUOTAS)),
        await js.key_value(namespace.bucket(streams.KV_TENANT_USAGE)), TenantQuota(), ttl_s=3600,
    )  # fmt: skip
    await quotas.set("globex", TenantQuota(max_running_per_kind=3, weight=2.0))
    await quotas.set("initech", TenantQuota(concurrency_key_limit=2))
    tallies = Tallies(quotas, RunTimes(await js.key_value(namespace.bucket(streams.KV_DISPATCH_RUNTIMES)), 5))
    clocks = FairClocks(await js.key_value(namespace.bucket(streams.KV_DISPATCH_FAIR)))
    index = QueueIndex(None, line_order(policy, 60.0))  # type: ignore[arg-type]
    scheduler = Scheduler(index, clocks, {"acme": 1.0}, 1.0, 60.0, quotas, tallies, policy)
    rng, now, decisions = random.Random(11), time.time(), set[str]()
    for n in range(1, 1500):
        _mutate(index, rng, n, now)
        kind = rng.choice(KINDS)
        due = scheduler._due(kind)
        lost = {c.key for cs in due.values() for c in cs if rng.random() < 0.1}
        scanned, scanned_weights = await scheduler._within_quotas(
            kind, {t: kept for t, cs in due.items() if (kept := [c for c in cs if c.key not in lost])}
        )
        heads, weights = await scheduler._heads(kind, lost)
        state = FairState(v=rng.random(), finish={t: rng.random() * 2 for t in TENANTS if rng.random() < 0.5})
        if policy == "fifo":
            expected, got = pick_oldest(scanned), pick_oldest(heads)
        else:
            expected, got = pick(scanned, state, scanned_weights, 60.0), pick(heads, state, weights, 60.0)
        assert (got and got.extra) == (expected and expected.extra), f"decision {n}"
        decisions.add(got.key if got else "none")
    assert len(decisions) > 20, "the random queue made few distinct decisions: the comparison proves little"
