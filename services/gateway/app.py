"""The gateway's FastAPI application: health, readiness and, for local storage, the blob routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import nats
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from nats.aio.client import Client as NatsClient

from services.common.config import GatewaySettings
from services.common.storage import LocalStorage, Storage, make_storage
from services.gateway.blobs import blob_router, problem

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 2.0
"""The longest each readiness check may take."""


async def _ignore_nats_error(exc: Exception) -> None:
    log.debug("readiness NATS connection: %s", exc)


class _Readiness:
    """Readiness checks. NATS: ``app.state.nats`` when a service set it, else a private connection
    opened lazily (one connect attempt, short timeout) and re-opened after it drops."""

    def __init__(self, app: FastAPI, settings: GatewaySettings) -> None:
        self.state = app.state
        self.settings = settings
        self.owned: NatsClient | None = None
        self.lock = asyncio.Lock()

    async def storage(self) -> str:
        storage: Storage = self.state.storage
        await asyncio.wait_for(storage.ping(), READY_TIMEOUT_S)
        return "ok"

    async def nats(self) -> str:
        shared: NatsClient | None = self.state.nats
        if shared is not None:
            if not shared.is_connected:
                raise ConnectionError("not connected")
            return "ok"
        async with self.lock:
            if self.owned is not None and not self.owned.is_connected:
                await self.aclose()
            if self.owned is None:
                self.owned = await asyncio.wait_for(
                    nats.connect(
                        self.settings.nats_url,
                        name="gpurelay-gateway-readyz",
                        connect_timeout=min(READY_TIMEOUT_S, self.settings.nats_connect_timeout_s),
                        allow_reconnect=False,
                        max_reconnect_attempts=1,  # 0 would retry forever inside nats-py
                        reconnect_time_wait=0.1,
                        error_cb=_ignore_nats_error,
                    ),
                    READY_TIMEOUT_S,
                )
        return "ok"

    async def check(self) -> Response:
        checks: dict[str, str] = {}
        for name, probe in (("storage", self.storage), ("nats", self.nats)):
            try:
                checks[name] = await probe()
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
                checks[name] = f"error: {type(exc).__name__}: {exc}".rstrip(": ")
        if all(value == "ok" for value in checks.values()):
            return JSONResponse({"status": "ok", "checks": checks})
        failed = ", ".join(name for name, value in checks.items() if value != "ok")
        return problem(503, f"Not ready: {failed}.", checks=checks)

    async def aclose(self) -> None:
        owned, self.owned = self.owned, None
        if owned is not None:
            with contextlib.suppress(Exception):
                await owned.close()


def create_app(settings: GatewaySettings, *, storage: Storage | None = None) -> FastAPI:
    """The gateway app over ``storage`` (default: :func:`make_storage` from ``settings``)."""
    store = storage if storage is not None else make_storage(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await readiness.aclose()
            await store.aclose()

    app = FastAPI(title="gpurelay gateway", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.state.storage = store
    app.state.nats = None
    readiness = _Readiness(app, settings)
    if isinstance(store, LocalStorage):
        app.include_router(blob_router(store))

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=None)
    async def readyz() -> Response:
        """Readiness: storage and NATS reachable (200), else a 503 problem listing the failures."""
        return await readiness.check()

    return app
