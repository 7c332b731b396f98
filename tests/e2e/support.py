"""Helpers of the end-to-end tests: a signature-checking webhook receiver, uploads, SSE, downloads."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from gpurelay_client import AsyncClient, Event
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts.job_record import JobRecord
from contracts.streams import KV_JOBS
from contracts.subjects import Namespace
from services.cli.dev import DEV_TENANT
from services.common.nats.kv_watch import latest_record
from tests.support.http import bound_socket, serve
from tests.support.nats import connect_env

TIMEOUT = httpx.Timeout(30.0)
SessionStack = tuple[dict[str, str], httpx.AsyncClient]
"""The stack's dev.env values and an API client with its dev key."""


@dataclass
class Delivery:
    """One webhook request: its ``webhook-id``, the envelope it carried, whether the signature held."""

    webhook_id: str
    envelope: dict[str, Any]
    valid: bool


@dataclass
class Receiver:
    """A webhook endpoint on loopback (uvicorn thread) handing deliveries to the test's event loop.

    ``secret`` is set once the endpoint is registered (the gateway returns it once); a delivery
    before that counts as invalid. Every delivery is answered 204, so none is retried.
    """

    loop: asyncio.AbstractEventLoop
    url: str = ""
    secret: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    _arrived: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)

    async def handle(self, request: Request) -> Response:
        """Record one delivery (checking its signature) and answer 204."""
        body = await request.body()
        try:
            valid = self.secret is not None and Webhook(self.secret).verify(body, dict(request.headers)) is not None
        except WebhookVerificationError:
            valid = False
        delivery = Delivery(request.headers.get("webhook-id", ""), json.loads(body), valid)
        self.loop.call_soon_threadsafe(self._arrived.put_nowait, delivery)
        return Response(status_code=204)

    async def until(self, job_id: str, event_type: str, timeout_s: float = 30.0) -> list[Delivery]:
        """Wait (bounded) until ``job_id``'s ``event_type`` arrived; that job's deliveries, in order."""
        async with asyncio.timeout(timeout_s):
            while event_type not in [d.envelope.get("type") for d in self.of(job_id)]:
                self.deliveries.append(await self._arrived.get())
        return self.of(job_id)

    async def until_count(self, job_id: str, event_type: str, count: int, timeout_s: float = 30.0) -> list[Delivery]:
        """Wait (bounded) until ``count`` deliveries of ``job_id``'s ``event_type`` arrived; those, in order."""
        async with asyncio.timeout(timeout_s):
            while len(wanted := [d for d in self.of(job_id) if d.envelope.get("type") == event_type]) < count:
                self.deliveries.append(await self._arrived.get())
        return wanted

    def of(self, job_id: str) -> list[Delivery]:
        """The deliveries of ``job_id`` so far, in arrival order."""
        return [d for d in self.deliveries if d.envelope.get("job_id") == job_id]


@contextmanager
def receiver(loop: asyncio.AbstractEventLoop) -> Iterator[Receiver]:
    """A :class:`Receiver` served over real HTTP on 127.0.0.1 for the block."""
    hook = Receiver(loop)
    sock = bound_socket()
    hook.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    with serve(Starlette(routes=[Route("/hook", hook.handle, methods=["POST"])]), sock):
        yield hook


def auth(env: dict[str, str]) -> dict[str, str]:
    """The dev key's Authorization header."""
    return {"Authorization": f"Bearer {env['GPURELAY_API_KEY']}"}


async def upload(api: httpx.AsyncClient, path: Path) -> str:
    """Upload ``path`` through a pre-signed PUT and complete it; the upload id."""
    data = await asyncio.to_thread(path.read_bytes)
    body = {"filename": path.name, "content_type": "video/mp4", "size": len(data)}
    created = await api.post("/v1/uploads", json=body)
    assert created.status_code in (200, 201), created.text
    presigned = created.json()
    headers = {**presigned.get("headers", {}), "Content-Length": str(len(data))}
    async with httpx.AsyncClient(timeout=TIMEOUT) as storage:
        put = await storage.request(presigned.get("method", "PUT"), presigned["url"], headers=headers, content=data)
    assert put.status_code < 300, put.text
    done = await api.post(f"/v1/uploads/{presigned['id']}/complete")
    assert done.status_code == 200, done.text
    upload_id: str = presigned["id"]
    return upload_id


async def lap_job(api: httpx.AsyncClient, video: Path, **params: Any) -> str:
    """Upload ``video`` and create a lap_compare job on it; the job id."""
    body = {"kind": "lap_compare", "inputs": {"video": {"upload_id": await upload(api, video)}}, "params": params}
    created = await api.post("/v1/jobs", json=body)
    assert created.status_code in (200, 201, 202), created.text
    job_id: str = created.json()["id"]
    return job_id


def events_client(env: dict[str, str]) -> AsyncClient:
    """The Python client with the stack's URL and dev key (for its event streams)."""
    return AsyncClient(env["GPURELAY_URL"], api_key=env["GPURELAY_API_KEY"])


async def events(env: dict[str, str], job_id: str, timeout_s: float = 120.0) -> list[Event]:
    """The job's SSE stream from the start to its terminal event (the client's ``jobs.stream``; bounded).

    The bound covers the job's whole run, which a loaded machine slows several times over (a lap job
    of ~10 s took over 45 s under a stress run): it only ends a test that hangs."""
    async with asyncio.timeout(timeout_s), events_client(env) as client:
        return [event async for event in client.jobs.stream(job_id)]


async def settled(env: dict[str, str], job_id: str, timeout_s: float = 30.0) -> JobRecord:
    """The job's record once the dispatcher folded its terminal event (a KV watch, no polling)."""
    return await record_when(env, job_id, lambda record: record.terminal, timeout_s)


async def record_when(
    env: dict[str, str], job_id: str, done: Callable[[JobRecord], bool], timeout_s: float = 30.0
) -> JobRecord:
    """The job's record once ``done(record)`` holds (a KV watch of the stack's record, no polling)."""
    nc = await connect_env(env)
    try:
        kv = await nc.jetstream().key_value(Namespace("").bucket(KV_JOBS))
        record = await latest_record(kv, DEV_TENANT, job_id, done, timeout_s)
    finally:
        await nc.close()
    assert record is not None, f"no record of {job_id} within {timeout_s} s"
    assert done(record), f"{job_id} never got there within {timeout_s} s: {record.status}"
    return record


async def download(artifact: dict[str, Any]) -> bytes:
    """Fetch an artifact through its pre-signed URL (no API key) and check size and sha256."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.get(artifact["url"])
    assert response.status_code == 200, (artifact["name"], response.text[:200])
    assert len(response.content) == artifact["size"]
    digest = hashlib.sha256(response.content).hexdigest()
    assert digest == artifact["sha256"], artifact["name"]
    return response.content
