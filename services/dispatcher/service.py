"""The dispatcher service: consumers on JetStream wired to the fold, tickets and backends.

Its consumers, their order and their guard: :mod:`services.dispatcher.replica_consumers`; the
scheduling state it keeps (queue index, fair clocks, run times, quotas, tallies):
:mod:`services.dispatcher.scheduling.books`.

Metrics (:mod:`services.dispatcher.observe`): its consumers' lag and the pool are sampled on each
scrape of ``/metrics`` (served by ``gpurelay dispatcher`` beside ``/healthz``, or by the gateway's
origin under ``gpurelay dev``).

Besides: a task that keeps held tickets alive (and reads held records again after a reconnect:
held attempts follow their jobs' records as KV stores them, :mod:`services.dispatcher.running.held_records`),
the retention sweep, the sweep for jobs whose ``job.created`` was never published (it reads what
KV ``jobs`` stored since the last one: :class:`~services.dispatcher.scheduling.sweeper.CreatedSweeper`) and
the fold's audit, which rewrites unmoving records that differ from their stream
(:class:`~services.dispatcher.fold.audit.FoldAudit`; every replica runs it, compare-and-set keeps it safe), and
the sweep that lets go of queue entries claimed by a ticket that is gone
(:class:`~services.dispatcher.scheduling.stale_claims.StaleClaims`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient

from contracts import streams
from contracts.route_table import DEFAULT_ROUTES, Route, load_route_table
from services.common.http.nats_failover import StuckServerWatch
from services.common.nats.connection import cancel_and_wait, connect
from services.common.nats.declarations import declare_all
from services.common.nats.kv import bind_bucket
from services.common.observability import metrics
from services.common.observability.stop_clock import StopClock
from services.common.storage import Storage, make_storage
from services.dispatcher.consumers import ConsumerGuard
from services.dispatcher.fold.audit import FoldAudit
from services.dispatcher.fold.reactions import Reactions
from services.dispatcher.fold.records import route_pricing
from services.dispatcher.fold.refold import Refolds
from services.dispatcher.job_events import JobEvents
from services.dispatcher.kv_writes import WriteLog
from services.dispatcher.observe import start_sampling
from services.dispatcher.replica_consumers import start_consumers
from services.dispatcher.retention import Retention
from services.dispatcher.running.attempts import Attempts
from services.dispatcher.running.backends import Backend, LocalBackend, UnroutedBackend
from services.dispatcher.running.hearing import Hearing
from services.dispatcher.running.held_records import HeldRecords
from services.dispatcher.running.local_pool import LocalPool
from services.dispatcher.running.modal_backend import ModalBackend, ModalClient
from services.dispatcher.scheduling.books import SchedulingBooks
from services.dispatcher.scheduling.stale_claims import StaleClaims
from services.dispatcher.scheduling.sweeper import CreatedSweeper
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.store import JobStore
from services.dispatcher.subscribers import bound_and_watch
from services.dispatcher.sweeps import every

log = logging.getLogger(__name__)
Task = asyncio.Task[None]


def load_routes(settings: DispatcherSettings) -> dict[str, Route]:
    """The routes of ``settings.route_profile`` from ``settings.route_table``."""
    path = settings.route_table if Path(settings.route_table).exists() else DEFAULT_ROUTES
    profile = load_route_table(path).profile(settings.route_profile)
    return {str(kind): route for kind, route in profile.items()}


class Dispatcher:
    """One dispatcher replica: ``await start()`` inside a running loop, ``await stop()`` to end."""

    def __init__(
        self,
        settings: DispatcherSettings,
        *,
        routes: dict[str, Route] | None = None,
        storage: Storage | None = None,
        modal_client: ModalClient | None = None,
        backends: dict[str, Backend] | None = None,
    ) -> None:
        self.settings = settings
        self.routes = routes if routes is not None else load_routes(settings)
        self.storage = storage
        self.modal_client = modal_client
        self.extra_backends = backends or {}
        self.books = SchedulingBooks(settings)
        self._top_up: Callable[[], Awaitable[object]] = _nothing
        self.pool: LocalPool | None = None
        self.nc: NatsClient | None = None
        self.attempts: Attempts | None = None
        self.retention: Retention | None = None
        self.sweeper: CreatedSweeper | None = None
        self.stale_claims: StaleClaims | None = None
        self.audit: FoldAudit | None = None
        self.refolds: Refolds | None = None
        self.guard: ConsumerGuard | None = None
        self.nats_watch: StuckServerWatch | None = None
        """Moves ``nc`` off a server cut off from its cluster: told by the fold partitions and the sweeps."""
        self._advisories: list[Any] = []
        self._stop_sampling: Callable[[], None] = lambda: None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Connect, declare, start the worker pool, the subscribers and the background tasks."""
        s, ns = self.settings, self.settings.ns
        self.nc = nc = await connect(s, "dispatcher")
        self.nats_watch = watch = StuckServerWatch(nc, ns.stream(streams.JOBS))
        js = nc.jetstream()
        await declare_all(js, s)
        waits, dispatch_stream = await bind_bucket(js, ns.bucket(streams.KV_DISPATCHER_WAITS)), self.dispatch_stream
        jobs_kv = await bind_bucket(js, ns.bucket(streams.KV_JOBS))
        uploads_kv = await bind_bucket(js, ns.bucket(streams.KV_UPLOADS))
        prices = {kind: route.price_per_gpu_hour for kind, route in self.routes.items()}
        events = JobEvents(js, ns)
        store = JobStore(jobs_kv, route_pricing(prices), events)
        backends: dict[str, Backend] = {"local": UnroutedBackend("local"), "modal": UnroutedBackend("modal")}
        if any(r.backend == "local" for r in self.routes.values()) and "local" not in self.extra_backends:
            self.pool = LocalPool(s)
            await self.pool.start()
            backends["local"] = LocalBackend(self.pool)
        if any(r.backend == "modal" for r in self.routes.values()):
            backends["modal"] = ModalBackend(s, self.modal_client)
        backends |= self.extra_backends
        concurrency = {kind: route.concurrency for kind, route in self.routes.items()}
        scheduler, positions = await self.books.open(js, concurrency)
        queue, tallies = scheduler.queue, scheduler.tallies
        records = HeldRecords(nc, s.subjects, store)
        hearing = Hearing(nc, s.subjects)
        self.attempts = Attempts(s, self.routes, backends, store, events, scheduler, records, hearing)
        self._top_up = lambda: scheduler.top_up(js, dispatch_stream, list(self.routes), events)
        self.stale_claims = StaleClaims(js, dispatch_stream, queue, self.attempts.holding, s.claim_check_after_s)
        reactions = Reactions(store, events, uploads_kv, waits, self.routes, queue, positions)
        self.storage = self.storage or make_storage(s)
        self.retention = Retention(
            jobs_kv, store, self.storage, s.artifact_retention_hours, s.storage_prefix,
            recording_retention_hours=s.recording_retention_hours,
        )  # fmt: skip
        writes = WriteLog(jobs_kv)  # both sweeps learn from one read of KV jobs' writes
        self.sweeper = CreatedSweeper(store, events, s.created_republish_after_s, writes=writes)
        self.audit = FoldAudit(store, reactions, s.fold_audit_after_s, s.fold_audit_per_sweep,
                               s.fold_audit_candidates, s.fold_audit_max_events, writes=writes)  # fmt: skip
        self.guard = guard = ConsumerGuard(js, s.subjects)
        marks = await bind_bucket(js, ns.bucket(streams.KV_FOLD_REFOLDS))
        self.refolds = Refolds(reactions, s.fold_audit_max_events, s.fold_refolds_waiting, watch.failed, marks,
                               s.fold_refold_marks_every_s)  # fmt: skip
        consumers = await start_consumers(nc, js, s, guard, reactions, self.routes, dispatch_stream,
                                          self.attempts.on_ticket, watch.failed, self.refolds.add)  # fmt: skip
        self._advisories = await bound_and_watch(nc, js, guard, consumers.consumers)
        if s.metrics_enabled:
            metrics.register("dispatcher")
            self._stop_sampling = start_sampling(js, [(c.stream, c.durable) for c in consumers.consumers], self.pool)

        def sweeping(name: str, interval_s: float, sweep: Callable[[], Awaitable[object]], first: bool = False) -> Task:
            return asyncio.create_task(every(interval_s, sweep, first=first, failed=watch.failed), name=name)

        self._tasks = [
            asyncio.create_task(queue.follow(), name="queue-follow"),
            asyncio.create_task(hearing.link.run(), name="link-watch"),
            sweeping("keep-tickets", s.ticket_ack_wait_s / 3, self.attempts.refresh),
            sweeping("retain", s.retention_sweep_interval_s, self.retention.sweep, first=True),
            sweeping("created-sweep", s.created_sweep_interval_s, self.sweep_created),
            sweeping("fold-audit", s.fold_audit_interval_s, self.audit.sweep),
            asyncio.create_task(self.refolds.run(), name="fold-refolds"),
            sweeping("queue-top-up", s.queue_sweep_interval_s, self._top_up),
            sweeping("stale-claims", s.claim_check_interval_s, self.stale_claims.sweep),
            sweeping("tally-flush", s.tally_flush_interval_s, tallies.flush),
            *consumers.run(),
        ]
        log.info("dispatcher started", extra={"kinds": sorted(self.routes)})

    async def sweep_created(self) -> list[str]:
        """Publish the missing ``job.created`` of records stuck in ``created``; their job ids."""
        assert self.sweeper is not None
        return await self.sweeper.sweep()

    def metrics(self) -> dict[str, Any]:
        """Counters for operators (served on ``/healthz``): dead letters, handler errors, republished jobs,
        and the local pool's occupancy (``None`` without a local pool)."""
        counters: dict[str, Any] = self.guard.metrics() if self.guard else {"dead_lettered": {}, "handler_errors": {}}
        pool = self.pool.occupancy() if self.pool else None
        repaired = (self.audit.repaired if self.audit else 0) + (self.refolds.refolded if self.refolds else 0)
        republished = self.sweeper.republished if self.sweeper else 0
        released = self.stale_claims.released if self.stale_claims else 0
        return counters | {"created_republished": republished, "fold_repaired": repaired, "claims_released": released,
                           "local_pool": pool}  # fmt: skip

    async def stop(self, clock: StopClock | None = None) -> None:
        """Stop consuming, stop supervising (held tickets are adopted elsewhere), stop the pool; a slow
        stop names its slow parts in a warning (``clock``: the caller's, with parts of its own)."""
        clock = clock or StopClock("dispatcher")
        self._stop_sampling()
        with clock.part("tasks"):
            await cancel_and_wait(self._tasks)
            if self.nats_watch is not None:
                await self.nats_watch.stop()
        with clock.part("consumers"):
            for subscription in self._advisories:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
        with clock.part("attempts"):
            if self.attempts is not None:
                await self.attempts.stop()
        with clock.part("tallies and clocks"):
            await self.books.stop()
        with clock.part("pool"):
            if self.pool is not None:
                await self.pool.stop()
        with clock.part("nats drain"):
            if self.nc is not None:
                with contextlib.suppress(Exception):
                    await self.nc.drain()
        if self.storage is not None:
            with contextlib.suppress(Exception):
                await self.storage.aclose()
        clock.report()

    @property
    def dispatch_stream(self) -> str:
        """The name of the ticket stream."""
        return self.settings.ns.stream(streams.DISPATCH)


async def _nothing() -> None:
    """Before start: nothing to top up."""
