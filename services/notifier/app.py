"""The notifier's FastAPI application: SSE routes plus the webhook fan-out and endpoint deliveries.

The lifespan connects to NATS, builds the :class:`~services.notifier.state.NotifierState` (the
declarations applied, the buckets bound, its own ``webhook_deliveries`` bucket declared), loads the
webhook endpoints and API keys, listens for kicks (work that someone else queued), resumes every
delivery queue that has pending work, and starts the fan-out. Stopping cancels them; unacknowledged deliveries are
redelivered to the next notifier (at-least-once, the same ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI
from nats.aio.client import Client as NatsClient

from contracts.api.webhooks import WebhookRecord
from contracts.streams import KV_TENANT_CORS
from services.common.auth.key_cache import KeyCache
from services.common.http.cors import identify_with, install_cors
from services.common.http.health import install_health, nats_probe
from services.common.http.metrics import install_metrics
from services.common.http.problem import install_error_handlers
from services.common.http.tenant_origins import TenantOrigins
from services.common.nats.connection import cancel_and_wait, connect, log_failure
from services.common.nats.kv import bind_bucket
from services.common.nats.round_trip import round_trip
from services.common.observability.tracing import fastapi_telemetry
from services.notifier.observe import start_sampling
from services.notifier.routes import router
from services.notifier.settings import NotifierSettings
from services.notifier.state import NotifierState, open_state
from services.notifier.webhooks.fanout import FANOUT_DURABLE, FanOut
from services.notifier.webhooks.targets import JobHooks

log = logging.getLogger(__name__)
FANOUT_RESTART_PAUSE_S = 1.0
"""The pause before a failed (or ended) fan-out starts again."""


@contextlib.asynccontextmanager
async def running(settings: NotifierSettings) -> AsyncIterator[NotifierState]:
    """A connected notifier with its webhook machinery running, stopped on exit."""
    nc = await connect(settings, "notifier")
    fanout_task: asyncio.Task[None] | None = None
    stop_sampling: Callable[[], None] | None = None
    state: NotifierState | None = None
    try:
        state = await open_state(settings, nc)
        delivery = state.delivery

        def on_change(tenant: str, endpoint_id: str, old: WebhookRecord | None, new: WebhookRecord | None) -> None:
            if (new is None and old is not None) or (new and new.enabled and old is not None and not old.enabled):
                delivery.ensure(tenant, endpoint_id)  # resume a re-enabled queue, or drop a deleted one

        state.endpoints.listeners.append(on_change)
        await state.key_cache.start()
        if state.hub is not None:
            await state.hub.start()
        await state.endpoints.start()
        await delivery.listen_for_kicks(nc)
        await delivery.resume_all()
        fanout = FanOut(settings, state.js, state.endpoints, JobHooks(state.jobs), delivery, state.nats_watch.failed)
        await fanout.declare()
        fanout_task = asyncio.create_task(fan_out_forever(state, fanout), name="webhook-fanout")
        if settings.metrics_enabled:
            stop_sampling = start_sampling(state.js, settings, FANOUT_DURABLE)
        yield state
    finally:
        if stop_sampling is not None:
            stop_sampling()
        if fanout_task is not None:
            await cancel_and_wait([fanout_task])
        if state is not None:
            if state.hub is not None:
                await state.hub.stop()
            await state.nats_watch.stop()
            await state.delivery.stop()
            await state.endpoints.stop()
            await state.key_cache.stop()
            await state.sender.aclose()
        await round_trip(nc, 2.0)
        with contextlib.suppress(Exception):
            await nc.close()


def create_app(settings: NotifierSettings) -> FastAPI:
    """The notifier app: ``/v1/jobs/{id}/events``, ``/v1/events``, ``/v1/sessions/{id}/events``,
    ``/v1/webhooks/{id}/deliveries``, ``/healthz`` and ``/readyz``; webhooks run in its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings) as state:
            origins = TenantOrigins(await bind_bucket(state.js, settings.ns.bucket(KV_TENANT_CORS)))
            await origins.start()
            app.state.notifier, app.state.tenant_origins = state, origins
            app.state.nats_watches = (state.nats_watch,)  # the 503 handler tells it of each request NATS failed
            try:
                yield
            finally:
                app.state.notifier = app.state.tenant_origins = None
                app.state.nats_watches = ()
                await origins.stop()

    app = FastAPI(
        title="gpurelay notifier",
        version="1.0.0",
        lifespan=lifespan,
        telemetry=fastapi_telemetry(),
    )
    app.state.settings = settings
    app.state.notifier = None
    install_error_handlers(app)
    install_cors(app, settings.cors_origins, identify_with(_key_cache))
    install_metrics(app, settings, "notifier")
    app.include_router(router)

    install_health(app, {"nats": nats_probe(lambda: _connection(app))}, readiness_doc="Readiness: NATS reachable.")
    return app


async def fan_out_forever(state: NotifierState, fanout: FanOut) -> None:
    """Fan out under the ``fanout`` lease (one replica at a time), for as long as the notifier runs: a
    fan-out that fails is logged and started again after :data:`FANOUT_RESTART_PAUSE_S`."""
    while True:
        try:
            await state.leases.run("fanout", fanout.run)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            log_failure(log, exc, "webhook fan-out failed; it starts again in %g s", FANOUT_RESTART_PAUSE_S)
        await asyncio.sleep(FANOUT_RESTART_PAUSE_S)


def _key_cache(app: FastAPI) -> KeyCache | None:
    state: NotifierState | None = app.state.notifier
    return None if state is None else state.key_cache


def _connection(app: FastAPI) -> NatsClient | None:
    """The running notifier's NATS connection, if it has one."""
    state: NotifierState | None = app.state.notifier
    return None if state is None else state.nc
