"""``GET /metrics`` and the request duration histogram of the gateway and the notifier.

:func:`install_metrics` registers the service's metrics (:func:`services.common.observability.metrics.register`),
times every HTTP request by method, route template and status (:class:`HttpMetricsMiddleware`) and
serves ``/metrics`` in Prometheus' text format without an API key, unless
``GPURELAY_METRICS_ENABLED=false`` (then neither exists). It is for operators: the proxy in front
(``deploy/Caddyfile``) answers 404 for it, and Prometheus scrapes each service on its own port.
With the notifier mounted on the gateway's origin (``gpurelay dev``), the outer app times each
request once and its ``/metrics`` shows the whole process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from services.common.config import BaseServiceSettings
from services.common.observability import metrics
from services.common.observability.metric_labels import method_label, route_label

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
TIMED = "gpurelay.timed"
"""Scope key of a request an outer app already times (a mounted app leaves it alone)."""


class HttpMetricsMiddleware:
    """Observes ``gpurelay_http_request_duration_seconds`` for each HTTP request (pure ASGI: streams pass)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get(TIMED):
            await self.app(scope, receive, send)
            return
        scope[TIMED] = True
        started, status = time.perf_counter(), 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            labels = (method_label(str(scope.get("method", ""))), route_label(scope), str(status))
            metrics.HTTP_DURATION.labels(*labels).observe(time.perf_counter() - started)


async def metrics_endpoint(_: Request) -> Response:
    """The registry of this process, sampled gauges refreshed (Prometheus text format)."""
    body, content_type = await metrics.exposition()
    return Response(body, media_type=content_type)


def install_metrics(app: FastAPI, settings: BaseServiceSettings, service: str) -> None:
    """``service``'s metrics, the request histogram and ``GET /metrics`` on ``app`` (when enabled)."""
    if not settings.metrics_enabled:
        return
    metrics.register(service)
    app.add_middleware(HttpMetricsMiddleware)
    app.add_api_route(
        "/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False, response_class=Response, tags=["ops"]
    )
