"""The scheduling books one replica keeps: the queue index, the fair clocks, run times, quotas and tallies.

They are opened in turn at the dispatcher's start, each bound to its KV bucket and started as it is
made, so a start that fails part-way leaves those already made to :meth:`SchedulingBooks.stop`; the
scheduler and the queue positions are made over them. A stop flushes the tallies, then stops the
books' watches and the position updates in flight.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from nats.js import JetStreamContext

from contracts import streams
from services.common.nats.kv import bind_bucket
from services.common.quotas import QuotaBook
from services.dispatcher.scheduling.fair_clock import FairClocks
from services.dispatcher.scheduling.lines import line_order
from services.dispatcher.scheduling.positions import Positions
from services.dispatcher.scheduling.queue import QueueIndex
from services.dispatcher.scheduling.run_times import RunTimes
from services.dispatcher.scheduling.scheduler import Scheduler
from services.dispatcher.scheduling.tallies import Tallies
from services.dispatcher.settings import DispatcherSettings


@dataclass(eq=False)
class SchedulingBooks:
    """This replica's scheduling state: each book ``None`` until :meth:`open` makes it."""

    settings: DispatcherSettings
    queue: QueueIndex | None = None
    """KV ``dispatch_queue`` and this replica's mirror of it."""
    clocks: FairClocks | None = None
    """Each kind's SFQ clock (KV ``dispatch_fair``)."""
    runtimes: RunTimes | None = None
    """Each kind's observed run times (KV ``dispatch_runtimes``), the ETAs' source."""
    quotas: QuotaBook | None = None
    """Tenants' quotas and daily usage (KV ``quotas``, ``tenant_usage``)."""
    tallies: Tallies | None = None
    """What ended attempts add to usage and run times, written every ``tally_flush_interval_s``."""
    positions: Positions | None = None
    """Waiting jobs' queue positions and ETAs (``job.position``)."""

    async def open(self, js: JetStreamContext, concurrency: dict[str, int]) -> tuple[Scheduler, Positions]:
        """Make and start each book, then the scheduler and the queue positions (``concurrency``: each
        kind's), which a claim moves; those two."""
        s, ns = self.settings, self.settings.ns
        order = line_order(s.scheduling_policy, s.priority_ageing_s)
        self.queue = queue = QueueIndex(await bind_bucket(js, ns.bucket(streams.KV_DISPATCH_QUEUE)), order)
        self.clocks = clocks = FairClocks(await bind_bucket(js, ns.bucket(streams.KV_DISPATCH_FAIR)))
        await clocks.start()
        runtimes = RunTimes(await bind_bucket(js, ns.bucket(streams.KV_DISPATCH_RUNTIMES)), s.eta_window)
        self.runtimes = runtimes
        await runtimes.start()
        quotas = QuotaBook(
            await bind_bucket(js, ns.bucket(streams.KV_QUOTAS)),
            await bind_bucket(js, ns.bucket(streams.KV_TENANT_USAGE)),
            s.quota_defaults, s.quota_cache_s,
        )  # fmt: skip
        self.quotas = quotas
        await quotas.start()
        self.tallies = tallies = Tallies(quotas, runtimes)
        scheduler = Scheduler(
            queue, clocks, s.tenant_weights, s.tenant_weight_default, s.priority_ageing_s, quotas, tallies,
            s.scheduling_policy,
        )  # fmt: skip
        self.positions = positions = Positions(
            js, ns, queue, runtimes, concurrency, scheduler.weight, s.queue_position_top, s.queue_position_interval_s,
        )  # fmt: skip
        scheduler.on_start = positions.moved
        return scheduler, positions

    async def stop(self) -> None:
        """Flush the tallies (a failed flush is let go), then stop the quotas, run times, positions and clocks."""
        if self.tallies is not None:
            with contextlib.suppress(Exception):
                await self.tallies.flush()
        for book in (self.quotas, self.runtimes, self.positions, self.clocks):
            if book is not None:
                await book.stop()
