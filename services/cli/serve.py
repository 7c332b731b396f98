"""``gpurelay gateway|dispatcher|notifier``: one service in the foreground (what compose runs).

Each reads its settings from ``GPURELAY_*`` (or ``<data dir>/dev.env``) and stops cleanly on
SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import typer
import uvicorn

from services.common.config import DispatcherSettings, GatewaySettings, NotifierSettings, load_settings
from services.common.http_server import EmbeddedHttpServer
from services.common.logging import setup_logging

serve_app = typer.Typer(add_completion=False)


def _run_asgi(app: Any, host: str, port: int) -> None:
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")


@serve_app.command()
def gateway() -> None:
    """Serve the public REST API."""
    from services.gateway.app import create_app

    settings = load_settings(GatewaySettings)
    setup_logging(settings, service="gateway")
    _run_asgi(create_app(settings), settings.host, settings.port)


@serve_app.command()
def notifier() -> None:
    """Serve SSE and deliver webhooks."""
    from services.notifier.app import create_app

    settings = load_settings(NotifierSettings)
    setup_logging(settings, service="notifier")
    _run_asgi(create_app(settings), settings.host, settings.port)


def _dispatcher_health(dispatcher: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def healthz(_: Any) -> JSONResponse:
        nc = dispatcher.nc
        ok = nc is not None and nc.is_connected
        return JSONResponse({"status": "ok" if ok else "nats disconnected"}, status_code=200 if ok else 503)

    return Starlette(routes=[Route("/healthz", healthz)])


async def _serve_dispatcher(settings: DispatcherSettings) -> None:
    from services.dispatcher.service import Dispatcher

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    dispatcher = Dispatcher(settings)
    await dispatcher.start()
    health = EmbeddedHttpServer(settings.host, settings.port)
    await health.start(_dispatcher_health(dispatcher))
    try:
        await stop.wait()
    finally:
        await health.stop()
        await dispatcher.stop()


@serve_app.command()
def dispatcher() -> None:
    """Route jobs to workers; serves /healthz on GPURELAY_PORT (default 8002)."""
    settings = load_settings(DispatcherSettings)
    setup_logging(settings, service="dispatcher")
    asyncio.run(_serve_dispatcher(settings))
