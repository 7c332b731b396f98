"""A deep queue: a scheduling decision and a queue position with 10,000 attempts waiting, against the
full scan they replaced, in one run.

One kind, ``TENANTS`` tenants, ``QUEUED`` unclaimed entries (priorities 0–9) and ``RUNNING``
claimed ones in a dispatcher's mirror of the queue index (:class:`~services.dispatcher.scheduling.queue.QueueIndex`;
the quota reads go to a real KV bucket on an embedded nats-server, cached as in the service). A
decision is what a ticket computes before its claim: the heads of the tenants' lines
(:meth:`~services.dispatcher.scheduling.scheduler.Scheduler._heads`) then the fair pick, against every due
entry gathered and filtered (``_due`` + ``_within_quotas``, the code before the lines) then the
same pick. A position is a newly queued job's place in its tenant's line: a bisection, against
sorting the tenant's entries by :meth:`~services.dispatcher.scheduling.fair.Candidate.order`. The mirror's write
of one entry (each watch update) is timed too: with the lines kept, against the mirror's dict alone.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats

from bench.common import Result, format_table
from contracts import streams
from contracts.quotas import TenantQuota
from contracts.streams import declarations
from contracts.subjects import Namespace
from services.common.nats.declarations import apply_declarations
from services.common.nats.server.embedded import EmbeddedNats
from services.common.quotas import QuotaBook
from services.dispatcher.scheduling.fair import FairState, pick
from services.dispatcher.scheduling.fair_clock import FairClocks
from services.dispatcher.scheduling.lines import line_order
from services.dispatcher.scheduling.queue import QueueIndex
from services.dispatcher.scheduling.queue_entries import QueueEntry
from services.dispatcher.scheduling.run_times import RunTimes
from services.dispatcher.scheduling.scheduler import Scheduler
from services.dispatcher.scheduling.tallies import Tallies

QUEUED = 10_000
RUNNING = 64
TENANTS = 10
TIMES = 200
AGEING_S = 60.0
NOTES = [
    f"dispatch queue: one kind with {QUEUED:,} waiting attempts over {TENANTS} tenants (priorities 0-9) and "
    f"{RUNNING} running, in one dispatcher's mirror of the queue index; the median of {TIMES} timings each. "
    "Decision: what a ticket computes before its claim (the claim's KV round trip is not in it). Position: a newly "
    "queued job's place in its tenant's line. Both baselines are the code before the lines (a scan of every "
    "entry, a sort of the tenant's), in the same process and run.",
]


def _entries(rng: random.Random, now: float) -> list[QueueEntry]:
    return [
        QueueEntry(
            tenant=f"t{n % TENANTS}",
            job_id=f"j{n}",
            kind="pose",
            attempt=1,
            priority=rng.randrange(10),
            enqueued_at=now - QUEUED + n,
            claimed_by=n + 1 if n < RUNNING else None,
        )
        for n in range(QUEUED + RUNNING)
    ]


async def _median_ms(step: Callable[[], Awaitable[object]]) -> float:
    timings = []
    for _ in range(TIMES):
        began = time.perf_counter()
        await step()
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)


async def measure() -> list[Result]:
    """The figures, against their baselines."""
    with tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
        nc = await nats.connect(server.url)
        js, ns = nc.jetstream(), Namespace("bq")
        await apply_declarations(js, declarations(ns))
        quotas = QuotaBook(
            await js.key_value(ns.bucket(streams.KV_QUOTAS)), await js.key_value(ns.bucket(streams.KV_TENANT_USAGE)),
            TenantQuota(), ttl_s=3600,
        )  # fmt: skip
        tallies = Tallies(quotas, RunTimes(await js.key_value(ns.bucket(streams.KV_DISPATCH_RUNTIMES)), 5))
        clocks = FairClocks(await js.key_value(ns.bucket(streams.KV_DISPATCH_FAIR)))
        index = QueueIndex(None, line_order("fair", AGEING_S))  # type: ignore[arg-type]  # the mirror alone
        scheduler = Scheduler(index, clocks, {}, 1.0, AGEING_S, quotas, tallies)
        entries = _entries(random.Random(5), time.time())
        for revision, entry in enumerate(entries, 1):
            index._remember(entry, revision)
        state = FairState()

        async def by_heads() -> object:
            heads, weights = await scheduler._heads("pose", set())
            return pick(heads, state, weights, AGEING_S)

        async def by_scan() -> object:
            due, weights = await scheduler._within_quotas("pose", scheduler._due("pose"))
            return pick(due, state, weights, AGEING_S)

        last = entries[-1]

        async def by_bisection() -> object:
            return index.lines.position(last.key)

        async def by_sort() -> object:
            waiting = [e.candidate() for e, _ in index.entries("pose") if e.tenant == last.tenant and not e.claimed_by]
            return [c.key for c in sorted(waiting, key=lambda c: c.order(AGEING_S))].index(last.key) + 1

        if await by_heads() != await by_scan() or await by_bisection() != await by_sort():
            raise RuntimeError("the lines disagree with the scan they replace: the figures would compare nothing")
        decision = await _median_ms(by_heads), await _median_ms(by_scan)
        position = await _median_ms(by_bisection) * 1000, await _median_ms(by_sort) * 1000  # µs
        write = _write_us(index, last), _write_us(QueueIndex(None), last, dict_only=True)  # type: ignore[arg-type]
        await nc.close()
    label = f"{QUEUED:,} queued over {TENANTS} tenants"
    return [
        Result.compare(f"queue: scheduling decision, {label}, heads of the lines (baseline: scan)", decision[0], "ms",
                       decision[1]),
        Result.compare(f"queue: a new job's queue position, {label}, bisection (baseline: sort)", position[0], "µs",
                       position[1]),
        Result.compare(f"queue: mirror write of one entry, {label}, lines kept (baseline: the dict alone)", write[0],
                       "µs", write[1]),
    ]  # fmt: skip


def _write_us(index: QueueIndex, entry: QueueEntry, dict_only: bool = False) -> float:
    """µs per mirror write of ``entry`` (the median of :data:`TIMES` batches of 100)."""
    timings = []
    for batch in range(TIMES):
        began = time.perf_counter()
        for n in range(100):
            if dict_only:
                index.by_kind[entry.kind][entry.key] = (entry, batch * 100 + n)
            else:
                index._remember(entry, batch * 100 + n)
        timings.append((time.perf_counter() - began) * 1e6 / 100)
    return statistics.median(timings)


def run() -> list[Result]:
    """Run the deep-queue benchmarks."""
    return asyncio.run(measure())


if __name__ == "__main__":
    print(format_table(run()))
