"""The dispatcher service: FastStream subscribers on JetStream wired to the fold, tickets and backends.

Subscribers (every one a durable pull consumer shared by all replicas, with an explicit ack policy):

* ``dispatcher-jobs`` on ``jobs.>`` (JOBS): folds each event into KV ``jobs`` and reacts
  (:mod:`services.dispatcher.reactions`). ``max_ack_pending=1``: one event in flight across every
  replica, so records are folded in stream order and KV equals :func:`~services.dispatcher.fold.fold`
  of the stream. ``NACK_ON_ERROR``: a failed fold is redelivered.
* ``dispatcher-uploads`` on ``uploads.>`` (JOBS): releases jobs waiting on the upload.
  ``NACK_ON_ERROR``.
* ``dispatch-{kind}`` on ``dispatch.{kind}`` (DISPATCH), one per routed kind, ``max_ack_pending`` =
  the route's concurrency: :class:`~services.dispatcher.attempts.Attempts` holds each ticket
  until its attempt ends. ``MANUAL`` ack: the ack *is* the release of the concurrency slot.

Besides: a KV watch on ``jobs`` that wakes held attempts, a task that keeps held tickets alive,
and the retention sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from faststream import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy

from contracts import streams
from contracts.job_record import JobRecord
from services.common.config import DispatcherSettings
from services.common.nats import connect, declare_all
from services.common.storage import Storage, make_storage
from services.dispatcher.attempts import Attempts
from services.dispatcher.backends import Backend, LocalBackend, UnroutedBackend
from services.dispatcher.fold import route_pricing
from services.dispatcher.local_pool import LocalPool
from services.dispatcher.modal_backend import ModalBackend, ModalClient
from services.dispatcher.reactions import Reactions
from services.dispatcher.retention import Retention
from services.dispatcher.routes import DEFAULT_ROUTES, Route, load_route_table
from services.dispatcher.state import DISPATCH_STREAM, JobEvents, JobStore, declare_dispatch, dispatch_subject

log = logging.getLogger(__name__)


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
    ) -> None:
        self.settings = settings
        self.routes = routes if routes is not None else load_routes(settings)
        self.storage = storage
        self.modal_client = modal_client
        self.pool: LocalPool | None = None
        self.nc: NatsClient | None = None
        self.broker: NatsBroker | None = None
        self.attempts: Attempts | None = None
        self.retention: Retention | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Connect, declare, start the worker pool, the subscribers and the background tasks."""
        s, ns = self.settings, self.settings.ns
        self.nc = nc = await connect(s, "dispatcher")
        js = nc.jetstream()
        await declare_all(js, s)
        waits, dispatch_stream = await declare_dispatch(js, ns)
        jobs_kv = await js.key_value(ns.bucket(streams.KV_JOBS))
        uploads_kv = await js.key_value(ns.bucket(streams.KV_UPLOADS))
        prices = {kind: route.price_per_gpu_hour for kind, route in self.routes.items()}
        store, events = JobStore(jobs_kv, route_pricing(prices)), JobEvents(js, ns)
        backends: dict[str, Backend] = {"local": UnroutedBackend("local"), "modal": UnroutedBackend("modal")}
        if any(r.backend == "local" for r in self.routes.values()):
            self.pool = LocalPool(s)
            await self.pool.start()
            backends["local"] = LocalBackend(self.pool)
        if any(r.backend == "modal" for r in self.routes.values()):
            backends["modal"] = ModalBackend(s, self.modal_client)
        self.attempts = Attempts(s, self.routes, backends, store, events)
        reactions = Reactions(store, events, uploads_kv, waits, self.routes)
        self.storage = self.storage or make_storage(s)
        self.retention = Retention(jobs_kv, store, self.storage, s.artifact_retention_hours, s.storage_prefix)
        self.broker = broker = NatsBroker(
            s.nats_url, connect_timeout=int(max(1, s.nats_connect_timeout_s)), logger=None
        )
        jobs_stream = JStream(ns.stream(streams.JOBS), declare=False)

        @broker.subscriber(
            ns.subject("jobs.>"),
            stream=jobs_stream,
            durable="dispatcher-jobs",
            pull_sub=PullSub(batch_size=1, timeout=5.0),
            config=ConsumerConfig(max_ack_pending=1, ack_wait=s.event_ack_wait_s, deliver_policy=DeliverPolicy.ALL),
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )
        async def on_job_event(msg: NatsMessage) -> None:
            await reactions.on_job_event(msg.body)

        @broker.subscriber(
            ns.subject("uploads.>"),
            stream=jobs_stream,
            durable="dispatcher-uploads",
            pull_sub=PullSub(batch_size=1, timeout=5.0),
            config=ConsumerConfig(ack_wait=s.event_ack_wait_s, deliver_policy=DeliverPolicy.ALL),
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )
        async def on_upload(msg: NatsMessage) -> None:
            await reactions.on_upload_completed(msg.body)

        for kind, route in self.routes.items():
            self._ticket_subscriber(broker, JStream(dispatch_stream, declare=False), kind, route.concurrency)
        await broker.start()
        self._tasks = [
            asyncio.create_task(self._watch_records(jobs_kv)),
            asyncio.create_task(self._keep_tickets()),
            asyncio.create_task(self._sweep_retention()),
        ]
        log.info("dispatcher started", extra={"kinds": sorted(self.routes)})

    def _ticket_subscriber(self, broker: NatsBroker, stream: JStream, kind: str, limit: int) -> None:
        attempts = self.attempts
        assert attempts is not None

        @broker.subscriber(
            dispatch_subject(self.settings.ns, kind),
            stream=stream,
            durable=f"dispatch-{kind}",
            pull_sub=PullSub(batch_size=1, timeout=5.0),
            config=ConsumerConfig(max_ack_pending=limit, ack_wait=self.settings.ticket_ack_wait_s),
            ack_policy=AckPolicy.MANUAL,
        )
        async def on_ticket(msg: NatsMessage) -> None:
            await attempts.on_ticket(msg.body, msg.raw_message)

    async def _watch_records(self, kv: Any) -> None:
        assert self.attempts is not None
        while True:
            try:
                watcher = await kv.watchall(ignore_deletes=True)
                async for entry in watcher:
                    if entry is not None and entry.value:
                        self.attempts.on_record(JobRecord.model_validate_json(entry.value))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("jobs KV watch failed; restarting it")
                await asyncio.sleep(1.0)

    async def _keep_tickets(self) -> None:
        assert self.attempts is not None
        while True:
            await asyncio.sleep(self.settings.ticket_ack_wait_s / 3)
            await self.attempts.refresh()

    async def _sweep_retention(self) -> None:
        assert self.retention is not None
        while True:
            with contextlib.suppress(Exception):
                await self.retention.sweep()
            await asyncio.sleep(self.settings.retention_sweep_interval_s)

    async def stop(self) -> None:
        """Stop consuming, stop supervising (held tickets are adopted elsewhere), stop the pool."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.broker is not None:
            with contextlib.suppress(Exception):
                await self.broker.stop()
        if self.attempts is not None:
            await self.attempts.stop()
        if self.pool is not None:
            await self.pool.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        if self.storage is not None:
            with contextlib.suppress(Exception):
                await self.storage.aclose()

    @property
    def dispatch_stream(self) -> str:
        """The name of the ticket stream."""
        return self.settings.ns.stream(DISPATCH_STREAM)
