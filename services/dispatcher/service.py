"""The dispatcher service: consumers on JetStream wired to the fold, tickets and backends.

Consumers (every one a durable pull consumer shared by all replicas, with an explicit ack policy, read
by a nats-py pull loop on the replica's one watched connection, :mod:`services.dispatcher.subscribers`):

* ``dispatcher-fold-{p}`` on JOBS' slots ``jobs.*.*.*.{slot}`` of partition ``p``, one per partition of
  the job events by job id (:mod:`services.dispatcher.fold.partitions`): folds each event into KV ``jobs`` and reacts
  (:mod:`services.dispatcher.fold.reactions`). Each partition is pinned to one replica at a time, which
  folds a batch of up to ``fold_batch`` events (:mod:`services.dispatcher.fold.serial`), so each
  job's record is folded in stream order by one writer and KV equals
  :func:`~services.dispatcher.fold.records.fold` of the stream, while partitions fold in parallel.
  ``fold_partitions=0``: the serial ``dispatcher-jobs`` on ``jobs.>`` (JOBS) instead, one event
  in flight (``max_ack_pending=1``).
* ``dispatcher-uploads`` on ``uploads.>`` (JOBS): releases jobs waiting on the upload (one event at a
  time, as the serial fold: :class:`~services.dispatcher.fold.serial.EventConsumer`).
* ``dispatch-{kind}`` on ``dispatch.{kind}`` (DISPATCH), one per routed kind, ``max_ack_pending`` =
  the route's concurrency (:mod:`services.dispatcher.running.tickets`):
  :class:`~services.dispatcher.running.attempts.Attempts` holds each ticket until its attempt ends: the ack
  *is* the release of the concurrency slot.

Every handler runs through :class:`~services.dispatcher.consumers.ConsumerGuard` (``MANUAL`` ack
policy): a failure is logged and redelivered at most ``event_max_deliver`` (``ticket_max_deliver``)
times, then dead-lettered, so a poison message never wedges a consumer.

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
from services.common.nats.publish import until_answered
from services.common.observability import metrics
from services.common.observability.stop_clock import StopClock
from services.common.quotas import QuotaBook
from services.common.storage import Storage, make_storage
from services.dispatcher.consumers import ConsumerGuard
from services.dispatcher.fold.audit import FoldAudit
from services.dispatcher.fold.partition import fold_consumers
from services.dispatcher.fold.partitions import partitions_made, retire_fold_copy, retire_other_partitions
from services.dispatcher.fold.reactions import Reactions
from services.dispatcher.fold.records import route_pricing
from services.dispatcher.fold.refold import Refolds
from services.dispatcher.fold.serial import EventConsumer
from services.dispatcher.job_events import JobEvents
from services.dispatcher.kv_writes import WriteLog
from services.dispatcher.observe import start_sampling
from services.dispatcher.retention import Retention
from services.dispatcher.running.attempts import Attempts
from services.dispatcher.running.backends import Backend, LocalBackend, UnroutedBackend
from services.dispatcher.running.hearing import Hearing
from services.dispatcher.running.held_records import HeldRecords
from services.dispatcher.running.local_pool import LocalPool
from services.dispatcher.running.modal_backend import ModalBackend, ModalClient
from services.dispatcher.running.tickets import TicketConsumer
from services.dispatcher.scheduling.fair_clock import FairClocks
from services.dispatcher.scheduling.lines import line_order
from services.dispatcher.scheduling.positions import Positions
from services.dispatcher.scheduling.queue import QueueIndex
from services.dispatcher.scheduling.run_times import RunTimes
from services.dispatcher.scheduling.scheduler import Scheduler
from services.dispatcher.scheduling.stale_claims import StaleClaims
from services.dispatcher.scheduling.sweeper import CreatedSweeper
from services.dispatcher.scheduling.tallies import Tallies
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
        self.queue: QueueIndex | None = None
        self.positions: Positions | None = None
        self.clocks: FairClocks | None = None
        self.tallies: Tallies | None = None
        self.quotas: QuotaBook | None = None
        self.runtimes: RunTimes | None = None
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
        concurrency = {kind: route.concurrency for kind, route in self.routes.items()}
        self.positions = positions = Positions(
            js, ns, queue, runtimes, concurrency, scheduler.weight, s.queue_position_top, s.queue_position_interval_s,
        )  # fmt: skip
        scheduler.on_start = positions.moved
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
        made = await until_answered(lambda: partitions_made(nc, ns), "list the fold's consumers")
        folds = await fold_consumers(nc, s, guard, reactions, made, watch.failed, self.refolds.add)
        uploads = EventConsumer(js, s, guard, ns.stream(streams.JOBS), ns.subject("uploads.>"), "dispatcher-uploads",
                                reactions.on_upload_completed, watch.failed)  # fmt: skip
        takers = [TicketConsumer(js, s, guard, dispatch_stream, kind, route.concurrency, self.attempts.on_ticket,
                                 watch.failed) for kind, route in self.routes.items()]  # fmt: skip
        consumers = [*(fold.consumer for fold in folds), uploads.consumer, *(taker.consumer for taker in takers)]
        await until_answered(uploads.start, "make the uploads consumer")  # each step asked again while JetStream
        for fold in folds:  # answers late: a loaded cluster left one unanswered, and the start failed
            await until_answered(fold.start, f"make {fold.consumer.durable}")
        if s.fold_partitions:  # an upgrade: the partitions' consumers on JOBS start after what it held
            await until_answered(lambda: retire_fold_copy(js, ns), "retire the fold's copy of JOBS")
        await until_answered(lambda: retire_other_partitions(js, ns, s.fold_partitions, made), "retire old partitions")
        for taker in takers:
            await until_answered(taker.start, f"make {taker.consumer.durable}")
        self._advisories = await bound_and_watch(nc, js, guard, consumers)
        if s.metrics_enabled:
            metrics.register("dispatcher")
            self._stop_sampling = start_sampling(js, [(c.stream, c.durable) for c in consumers], self.pool)

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
            sweeping("tally-flush", s.tally_flush_interval_s, self.tallies.flush),
            *(asyncio.create_task(fold.run(), name=fold.durable) for fold in folds),
            asyncio.create_task(uploads.run(), name=uploads.durable),
            *(asyncio.create_task(taker.run(), name=taker.durable) for taker in takers),
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
            await self._stop_books()
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

    async def _stop_books(self) -> None:
        if self.tallies is not None:
            with contextlib.suppress(Exception):
                await self.tallies.flush()
        for book in (self.quotas, self.runtimes, self.positions, self.clocks):
            if book is not None:
                await book.stop()

    @property
    def dispatch_stream(self) -> str:
        """The name of the ticket stream."""
        return self.settings.ns.stream(streams.DISPATCH)


async def _nothing() -> None:
    """Before start: nothing to top up."""
