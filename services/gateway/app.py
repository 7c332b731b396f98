"""The gateway's FastAPI application: the public REST API of ARCHITECTURE.md.

The lifespan connects to NATS, applies the stream and KV declarations (the gateway is their owner;
applying is idempotent, so replicas may all do it) and binds the buckets into a
:class:`~services.gateway.state.GatewayState`. Routers live in ``services/gateway/routes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from nats.aio.client import Client as NatsClient

from services.common.config import GatewaySettings
from services.common.nats import connect, declare_all
from services.common.storage import LocalStorage, Storage, make_storage
from services.gateway.blobs import blob_router
from services.gateway.errors import install_error_handlers, problem, use_problem_json_in_openapi
from services.gateway.middleware import BodySizeLimitMiddleware, install_cors
from services.gateway.routes import ROUTERS
from services.gateway.state import GatewayState

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 2.0
"""The longest each readiness check may take."""


async def _readiness(state: Any) -> Response:
    """200 when storage and NATS answer, else a 503 problem naming what failed."""
    checks: dict[str, str] = {}

    async def check_storage() -> None:
        storage: Storage = state.storage
        await asyncio.wait_for(storage.ping(), READY_TIMEOUT_S)

    async def check_nats() -> None:
        nc: NatsClient | None = state.nats
        if nc is None or not nc.is_connected:
            raise ConnectionError("not connected")
        await asyncio.wait_for(nc.flush(), READY_TIMEOUT_S)

    for name, probe in (("storage", check_storage), ("nats", check_nats)):
        try:
            await probe()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            checks[name] = f"error: {type(exc).__name__}: {exc}".rstrip(": ")
    if all(value == "ok" for value in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks})
    failed = ", ".join(name for name, value in checks.items() if value != "ok")
    return problem(503, f"Not ready: {failed}.", checks=checks)


def create_app(settings: GatewaySettings, *, storage: Storage | None = None) -> FastAPI:
    """The gateway app over ``storage`` (default: :func:`make_storage` from ``settings``)."""
    store = storage if storage is not None else make_storage(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nc = await connect(settings, "gateway")
        try:
            await declare_all(nc.jetstream(), settings)
            app.state.nats = nc
            app.state.gateway = state = await GatewayState.open(settings, nc, store)
            await state.key_cache.start()
            try:
                yield
            finally:
                await state.key_cache.stop()
        finally:
            app.state.nats = None
            with contextlib.suppress(Exception):
                await nc.drain()
            await store.aclose()

    app = FastAPI(
        title="gpurelay",
        version="1.0.0",
        summary="Run GPU jobs on media and robot data, and watch them live.",
        lifespan=lifespan,
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
    install_cors(app, settings.cors_origins)
    if isinstance(store, LocalStorage):
        app.include_router(blob_router(store))
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=None)
    async def readyz() -> Response:
        """Readiness: storage and NATS reachable (200), else a 503 problem listing the failures."""
        return await _readiness(app.state)

    return app
