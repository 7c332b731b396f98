"""The gateway's FastAPI application: the public REST API of ARCHITECTURE.md.

The lifespan connects to NATS, applies the stream and KV declarations (the gateway is their owner;
applying is idempotent, so replicas may all do it) and binds the buckets into a
:class:`~services.gateway.state.GatewayState`. Routers: :mod:`services.gateway.routers`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from contracts.streams import FRAMES, JOBS, KV_TENANT_CORS
from services.common.auth.key_cache import KeyCache
from services.common.http.cors import identify_with, install_cors
from services.common.http.health import Probe, install_health, nats_probe
from services.common.http.metrics import install_metrics
from services.common.http.nats_failover import StuckServerWatch
from services.common.http.problem import install_error_handlers, use_problem_json_in_openapi
from services.common.http.tenant_origins import TenantOrigins
from services.common.nats.connection import connect
from services.common.nats.declarations import declare_all
from services.common.nats.identity import as_identity
from services.common.nats.kv import bind_bucket
from services.common.observability.tracing import fastapi_telemetry
from services.common.storage import LocalStorage, Storage, make_storage
from services.gateway.blobs import blob_router
from services.gateway.dashboard import install_dashboard
from services.gateway.middleware import BodySizeLimitMiddleware
from services.gateway.routers import ROUTERS
from services.gateway.sessions.routes import PlainFrameRoute
from services.gateway.settings import GatewaySettings
from services.gateway.state import GatewayState

log = logging.getLogger(__name__)
READINESS_DOC = "Readiness: storage and NATS reachable (200), else a 503 problem listing the failures."


def _probes(app: FastAPI, store: Storage) -> dict[str, Probe]:
    """The readiness checks: storage answers a ping, NATS a flush."""

    async def check_storage() -> None:
        await store.ping()

    return {"storage": check_storage, "nats": nats_probe(lambda: app.state.nats)}


def _key_cache(app: FastAPI) -> KeyCache | None:
    state: GatewayState | None = getattr(app.state, "gateway", None)
    return state.key_cache if state is not None else None


def create_app(settings: GatewaySettings, *, storage: Storage | None = None) -> FastAPI:
    """The gateway app over ``storage`` (default: :func:`make_storage` from ``settings``)."""
    store = storage if storage is not None else make_storage(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nc = await connect(settings, "gateway")
        ingest_nc = None
        try:
            await declare_all(nc.jetstream(), settings)
            if settings.ingest_nats_user:  # Modal workers' events go out as the worker role, not the gateway
                ingest = as_identity(settings, settings.ingest_nats_user, settings.ingest_nats_password)
                ingest_nc = await connect(ingest, "gateway-ingest")
            app.state.nats = nc
            app.state.gateway = state = await GatewayState.open(settings, nc, store, ingest_nc)
            async with contextlib.AsyncExitStack() as started:  # what started is stopped, even if a later part fails
                watches: tuple[StuckServerWatch, ...] = (StuckServerWatch(nc, settings.ns.stream(JOBS)),)
                if ingest_nc is not None:  # the worker role's user, which may read FRAMES' info, not JOBS'
                    watches += (StuckServerWatch(ingest_nc, settings.ns.stream(FRAMES)),)
                for watch in watches:
                    started.push_async_callback(watch.stop)
                app.state.nats_watches = watches  # the 503 handler tells each (its own server asked)
                started.callback(setattr, app.state, "nats_watches", ())
                await state.key_cache.start()
                started.push_async_callback(state.key_cache.stop)
                if state.admission is not None:
                    await state.admission.book.start()
                    started.push_async_callback(state.admission.book.stop)
                origins = TenantOrigins(await bind_bucket(state.js, settings.ns.bucket(KV_TENANT_CORS)))
                await origins.start()
                started.push_async_callback(origins.stop)
                app.state.tenant_origins = origins
                started.callback(setattr, app.state, "tenant_origins", None)
                yield
        finally:
            app.state.nats = None
            for client in (ingest_nc, nc):
                with contextlib.suppress(Exception):
                    if client is not None:
                        await client.drain()
            await store.aclose()

    app = FastAPI(
        title="gpurelay",
        version="1.0.0",
        summary="Run GPU jobs on media and robot data, and watch them live.",
        lifespan=lifespan,
        telemetry=fastapi_telemetry(),
    )
    app.state.settings = settings
    app.state.ws_message_limits = ((r"/v1/sessions/[^/]+/stream", settings.session_frame_max_bytes + 1024),)
    app.state.storage = store
    app.state.nats = None
    install_error_handlers(app)
    use_problem_json_in_openapi(app)
    frames = settings.session_frame_max_bytes + 64 * 1024  # a multipart frame's envelope
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        exempt_prefixes=("/v1/blobs/",),
        larger=((r"/v1/sessions/[^/]+/frames", frames), (r"/compat/so100/[^/]+/upload-frame", frames)),
    )
    install_cors(app, settings.cors_origins, identify_with(_key_cache))
    install_metrics(app, settings, "gateway")
    if isinstance(store, LocalStorage):
        app.include_router(blob_router(store))
    for router in ROUTERS:
        app.include_router(router)
    app.router.routes.insert(0, PlainFrameRoute())  # a camera loop's frames: matched first, served lean

    install_health(app, _probes(app, store), readiness_doc=READINESS_DOC)
    install_dashboard(app)  # the web UI at /: pages, static files (the API at /v1 stays bearer-only)
    return app
