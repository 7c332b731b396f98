"""Uploads as a client makes them (presign, PUT, which completes them) and the events they stored."""

from __future__ import annotations

from typing import Any

import httpx
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.envelope import EventEnvelope
from contracts.subjects import Namespace
from tests.conftest import Tenant


async def stored(js: JetStreamContext, ns: Namespace, subject: str) -> list[EventEnvelope]:
    """Every event on ``subject`` (wildcards allowed) in JOBS, in order.

    The gateway answers only after JetStream acked its publish, so no waiting is needed.
    """
    events: list[EventEnvelope] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(ns.stream("JOBS"), seq=seq, subject=subject, next=True)
        except NotFoundError:
            return events
        events.append(EventEnvelope.from_json_bytes(msg.data or b""))
        seq = (msg.seq or seq) + 1


async def presign(t: Tenant, size: int, content_type: str = "video/mp4", name: str = "lap.mp4") -> Any:
    """Ask for a signed upload URL of ``size`` bytes (the upload stays pending until its PUT)."""
    response = await t.http.post("/v1/uploads", json={"filename": name, "content_type": content_type, "size": size})
    assert response.status_code == 201, response.text
    return response.json()


async def put(signed: dict[str, Any], data: bytes) -> None:
    """PUT ``data`` to a signed upload URL."""
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.request(signed["method"], signed["url"], headers=signed["headers"], content=data)
    assert response.status_code in (200, 201), response.text


async def uploaded(t: Tenant, data: bytes, content_type: str = "video/mp4", size: int | None = None) -> str:
    """Upload ``data`` (presign and PUT); the upload id."""
    signed = await presign(t, len(data) if size is None else size, content_type)
    await put(signed, data)
    return str(signed["id"])
