"""The notifier's FastAPI application: SSE routes plus the webhook fan-out and delivery workers.

The lifespan connects to NATS, applies the declarations (idempotent), binds the buckets, declares
its own ``webhook_deliveries`` bucket, loads the webhook endpoints, resumes every delivery queue
that has pending work, and starts the fan-out. Stopping cancels them; unacknowledged deliveries are
redelivered to the next notifier (at-least-once, the same ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import FastAPI
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import streams
from contracts.api_webhooks import WebhookRecord
from services.common.apikeys import ApiKeyStore
from services.common.config import NotifierSettings
from services.common.http.cors import install_cors
from services.common.http.health import install_health, nats_probe
from services.common.http.problem import install_error_handlers
from services.common.key_cache import KeyCache
from services.common.nats import connect, declare_all
from services.notifier.deliveries import DeliveryStore, open_bucket
from services.notifier.fanout import FanOut
from services.notifier.routes import StreamSlots, router, stream_slots
from services.notifier.sender import Sender
from services.notifier.targets import EndpointCache, JobHooks
from services.notifier.workers import Workers

log = logging.getLogger(__name__)


@dataclass
class NotifierState:
    """Everything the routes and the webhook machinery share in one notifier process."""

    settings: NotifierSettings
    nc: NatsClient
    js: JetStreamContext
    key_cache: KeyCache
    jobs: KeyValue
    sessions: KeyValue
    webhooks: KeyValue
    deliveries: DeliveryStore
    endpoints: EndpointCache
    workers: Workers
    sender: Sender
    streams: StreamSlots

    @property
    def signing_secret(self) -> bytes:
        """The secret stream tokens are signed with."""
        return self.settings.signing_secret.get_secret_value().encode()


async def open_state(settings: NotifierSettings, nc: NatsClient) -> NotifierState:
    """Bind buckets and build the webhook components (nothing started yet)."""
    js = nc.jetstream()
    ns = settings.ns
    await declare_all(js, settings)

    async def bucket(name: str) -> KeyValue:
        return await js.key_value(ns.bucket(name))

    webhooks = await bucket(streams.KV_WEBHOOKS)
    store = DeliveryStore(await open_bucket(js, ns, settings.webhook_deliveries_ttl_s))
    endpoints = EndpointCache(webhooks, js, ns.bucket(streams.KV_WEBHOOKS))
    sender = Sender(
        settings.webhook_allow_hosts,
        allow_http=settings.webhook_allow_http,
        timeout_s=settings.webhook_timeout_s,
        pool_idle_s=settings.webhook_pool_idle_s,
        pool_max_idle=settings.webhook_pool_max_idle,
    )
    return NotifierState(
        settings=settings,
        nc=nc,
        js=js,
        key_cache=KeyCache(
            ApiKeyStore(await bucket(streams.KV_APIKEYS)), settings.api_key_cache_s, settings.api_key_cache_max_entries
        ),
        jobs=await bucket(streams.KV_JOBS),
        sessions=await bucket(streams.KV_SESSIONS),
        webhooks=webhooks,
        deliveries=store,
        endpoints=endpoints,
        workers=Workers(settings, js, endpoints, store, sender),
        sender=sender,
        streams=stream_slots(settings.sse_max_streams_per_tenant, settings.sse_retry_ms),
    )


@contextlib.asynccontextmanager
async def running(settings: NotifierSettings) -> AsyncIterator[NotifierState]:
    """A connected notifier with its webhook machinery running, stopped on exit."""
    nc = await connect(settings, "notifier")
    fanout_task: asyncio.Task[None] | None = None
    state: NotifierState | None = None
    try:
        state = await open_state(settings, nc)
        workers = state.workers

        def on_change(tenant: str, endpoint_id: str, old: WebhookRecord | None, new: WebhookRecord | None) -> None:
            if (new is None and old is not None) or (new and new.enabled and old is not None and not old.enabled):
                workers.ensure(tenant, endpoint_id)  # resume a re-enabled queue, or drop a deleted one

        state.endpoints.listeners.append(on_change)
        await state.key_cache.start()
        await state.endpoints.start()
        await workers.resume_all()
        fanout = FanOut(settings, state.js, state.endpoints, JobHooks(state.jobs), workers)
        fanout_task = asyncio.create_task(fanout.run(await fanout.subscribe()), name="webhook-fanout")
        yield state
    finally:
        if fanout_task is not None:
            fanout_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await fanout_task
        if state is not None:
            await state.workers.stop()
            await state.endpoints.stop()
            await state.key_cache.stop()
            await state.sender.aclose()
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)
        with contextlib.suppress(Exception):
            await nc.close()


def create_app(settings: NotifierSettings) -> FastAPI:
    """The notifier app: ``/v1/jobs/{id}/events``, ``/v1/events``, ``/v1/sessions/{id}/events``,
    ``/v1/webhooks/{id}/deliveries``, ``/healthz`` and ``/readyz``; webhooks run in its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings) as state:
            app.state.notifier = state
            try:
                yield
            finally:
                app.state.notifier = None

    app = FastAPI(title="gpurelay notifier", version="1.0.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.notifier = None
    install_error_handlers(app)
    install_cors(app, settings.cors_origins)
    app.include_router(router)

    install_health(app, {"nats": nats_probe(lambda: _connection(app))}, readiness_doc="Readiness: NATS reachable.")
    return app


def _connection(app: FastAPI) -> NatsClient | None:
    """The running notifier's NATS connection, if it has one."""
    state: NotifierState | None = app.state.notifier
    return None if state is None else state.nc
