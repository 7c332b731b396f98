"""``/healthz`` (liveness) and ``/readyz`` (readiness) of every gpurelay app.

An app names its readiness probes (``{"nats": ..., "storage": ...}``); ``/readyz`` runs each with
:data:`READY_TIMEOUT_S` and answers 200 ``{"status": "ok", "checks": ...}``, or a 503 problem naming
what failed, with the same ``checks``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel

from services.common.http.problem import problem, problem_responses
from services.common.nats.round_trip import round_trip

READY_TIMEOUT_S = 2.0
"""The longest each readiness check may take."""

Probe = Callable[[], Awaitable[None]]
"""A readiness check: returns when its dependency answers, raises otherwise."""


class Readiness(BaseModel):
    """``/readyz``'s 200 body; its 503 problem carries the same ``checks``, some not ``"ok"``."""

    status: Literal["ok"]
    checks: dict[str, str]


def nats_probe(connection: Callable[[], NatsClient | None]) -> Probe:
    """A probe that NATS answers a flush on the app's current connection (``None``: not connected)."""

    async def check_nats() -> None:
        nc = connection()
        if nc is None or not nc.is_connected:
            raise ConnectionError("not connected")
        if not await round_trip(nc, READY_TIMEOUT_S):
            raise TimeoutError("no answer from NATS")

    return check_nats


async def readiness(probes: Mapping[str, Probe]) -> Response:
    """200 when every probe answers in time, else a 503 problem naming what failed."""
    checks: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe(), READY_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            checks[name] = f"error: {type(exc).__name__}: {exc}".rstrip(": ")
    if all(value == "ok" for value in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks})
    failed = ", ".join(name for name, value in checks.items() if value != "ok")
    return problem(503, f"Not ready: {failed}.", checks=checks)


def install_health(app: FastAPI, probes: Mapping[str, Probe], *, readiness_doc: str) -> None:
    """``GET /healthz`` and ``GET /readyz`` (documented by ``readiness_doc``) on ``app``."""

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=None,
        description=readiness_doc,
        responses={200: {"model": Readiness, "description": "Ready"}, **problem_responses(503)},
    )
    async def readyz() -> Response:
        return await readiness(probes)
