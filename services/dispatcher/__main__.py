"""``python -m services.dispatcher`` (also ``gpurelay dispatcher``): one replica until SIGINT/SIGTERM.

Beside the dispatcher it serves ``GET /healthz`` on ``GPURELAY_HOST:GPURELAY_PORT`` (default
127.0.0.1:8002): 200 while NATS is connected, else 503 — what compose's health check calls. Its JSON
also carries the operators' counters (:meth:`Dispatcher.metrics`): ``dead_lettered`` and
``handler_errors`` per consumer since start, ``created_republished``, and ``local_pool`` (``size``,
``started``, ``idle``, ``busy``; null without a local pool), which ``gpurelay status`` shows.
``GET /metrics`` on the same port serves its Prometheus metrics (:mod:`services.common.observability.metrics`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.common import event_loop
from services.common.config import load_settings
from services.common.http.metrics import metrics_endpoint
from services.common.http_server import EmbeddedHttpServer
from services.common.nats.connection import is_unavailable
from services.common.observability.logging import setup_logging
from services.common.observability.stop_clock import StopClock
from services.common.observability.tracing import setup_tracing
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatcherSettings

log = logging.getLogger(__name__)
START_RETRY_S = 60.0
"""How long a start that fails on NATS being away is tried again."""


def health_app(dispatcher: Dispatcher) -> Any:
    """``/healthz`` of a running dispatcher (with the kind of event loop it runs on), and
    ``/metrics`` unless ``GPURELAY_METRICS_ENABLED=false``."""

    async def healthz(_: Request) -> JSONResponse:
        ok = dispatcher.nc is not None and dispatcher.nc.is_connected
        body = {
            "status": "ok" if ok else "nats disconnected",
            "event_loop": event_loop.running_kind(),
            **dispatcher.metrics(),
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    routes = [Route("/healthz", healthz)]
    if dispatcher.settings.metrics_enabled:
        routes.append(Route("/metrics", metrics_endpoint))
    return Starlette(routes=routes)


async def serve(settings: DispatcherSettings) -> None:
    """Run a :class:`Dispatcher` and its health endpoint until a stop signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Bound before anything starts: a taken port ends the process at once (after the pool's workers had
    # started, it waited on them for ever, and nothing could restart it).
    health = EmbeddedHttpServer(settings.host, settings.port)
    dispatcher = await _started(settings)
    try:
        await health.start(health_app(dispatcher))
        print("dispatcher ready", flush=True)
        await stop.wait()
    finally:
        clock = StopClock("dispatcher")
        with clock.part("health server"):
            await health.stop()
        await dispatcher.stop(clock)


async def _started(settings: DispatcherSettings) -> Dispatcher:
    """A started :class:`Dispatcher`. A start that fails stops what it had started (the pool's workers
    must end, or the process never exits); one that failed because NATS or JetStream was away for a
    moment (a cluster electing its leaders, a reconnect) is tried again, for up to :data:`START_RETRY_S`."""
    deadline = asyncio.get_running_loop().time() + START_RETRY_S
    while True:
        dispatcher = Dispatcher(settings)
        try:
            await dispatcher.start()
            return dispatcher
        except BaseException as exc:
            await dispatcher.stop()
            if not isinstance(exc, Exception) or not is_unavailable(exc):
                raise
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("the dispatcher's start failed on NATS (%s); starting again", exc)
            await asyncio.sleep(1.0)


def main() -> None:
    """Entry point."""
    settings = load_settings(DispatcherSettings)
    setup_logging(settings, service="dispatcher")
    setup_tracing(settings, "dispatcher")
    event_loop.run(serve(settings))


if __name__ == "__main__":
    main()
