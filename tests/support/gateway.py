"""The gateway in tests: its settings, its served app, a tenant with a key, and uploads through it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import SecretStr

from bench.harness.secrets import INGEST_SECRET, SIGNING_SECRET
from contracts.envelope import EventEnvelope
from contracts.subjects import Namespace, stored_subject
from services.gateway.settings import GatewaySettings


def gateway_settings(data_dir: Path, url: str, **overrides: object) -> GatewaySettings:
    """Test settings: local storage under ``data_dir``, real secrets, this test's NATS namespace."""
    values: dict[str, object] = {
        "profile": "test",
        "data_dir": data_dir,
        "url": url,
        "storage_backend": "local",
        "signing_secret": SecretStr(SIGNING_SECRET),
        "ingest_token_secret": SecretStr(INGEST_SECRET),
        "nats_connect_timeout_s": 2.0,
        "frames_max_bytes": 8 * 1024 * 1024,
        "telemetry_max_bytes": 64 * 1024 * 1024,
    }
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Gateway:
    """A gateway app served over real HTTP on loopback."""

    settings: GatewaySettings
    app: FastAPI

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return self.settings.url


@dataclass(frozen=True)
class Tenant:
    """A tenant with an API key, and an HTTP client that sends it."""

    name: str
    key: str
    key_id: str
    http: httpx.AsyncClient


async def stored(js: JetStreamContext, ns: Namespace, subject: str) -> list[EventEnvelope]:
    """Every event on ``subject`` (wildcards allowed; one job event as published is read as JOBS stores
    it, with its slot token: :func:`~contracts.subjects.stored_subject`) in JOBS, in order.

    The gateway answers only after JetStream acked its publish, so no waiting is needed.
    """
    events: list[EventEnvelope] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(ns.stream("JOBS"), seq=seq, subject=stored_subject(ns, subject), next=True)
        except NotFoundError:
            return events
        events.append(EventEnvelope.from_json_bytes(msg.data or b""))
        seq = (msg.seq or seq) + 1


async def presign(t: Tenant, size: int, content_type: str = "video/mp4", name: str = "lap.mp4") -> Any:
    response = await t.http.post("/v1/uploads", json={"filename": name, "content_type": content_type, "size": size})
    assert response.status_code == 201, response.text
    return response.json()


async def put(signed: dict[str, Any], data: bytes) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.request(signed["method"], signed["url"], headers=signed["headers"], content=data)
    assert response.status_code in (200, 201), response.text


async def uploaded(t: Tenant, data: bytes, content_type: str = "video/mp4", size: int | None = None) -> str:
    signed = await presign(t, len(data) if size is None else size, content_type)
    await put(signed, data)
    return str(signed["id"])
