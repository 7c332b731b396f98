"""Helpers of the notifier tests: a scriptable webhook receiver, events, records, waiting."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts.api_webhooks import WebhookRecord, new_webhook_secret
from contracts.envelope import EventEnvelope
from contracts.events import EventType, job_event_name, make_event
from contracts.ids import new_id, tenant_key
from contracts.job_events import JobCreatedPayload, JobLogPayload, JobProgressPayload, JobSucceededPayload
from contracts.job_record import JobRecord
from contracts.job_specs import JobSpec, parse_job_spec
from contracts.subjects import Subjects


@dataclass(frozen=True)
class Captured:
    """One request a receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id`` header."""
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """A webhook receiver: records every request; answers from ``decide`` (when it returns a status),
    else from ``script`` (then ``default``)."""

    default: int = 200
    decide: Callable[[Captured], int | None] | None = None
    script: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Captured] = field(default_factory=list)
    seen: dict[str, set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        """The Starlette app that answers on any path."""

        async def handle(request: Request) -> Response:
            status, headers = self.record(request.url.path, dict(request.headers), await request.body())
            return Response(b"ok", status_code=status, headers=headers)

        return Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])])

    def record(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        """Keep one request; the status and headers to answer with."""
        with self.lock:
            captured = Captured(path, headers, body)
            self.received.append(captured)
            self.seen.setdefault(path, set()).add(headers.get("webhook-id", ""))
            answer: int | tuple[int, dict[str, str]] | None = self.decide(captured) if self.decide else None
            if answer is None:
                answer = self.script.pop(0) if self.script else self.default
        return answer if isinstance(answer, tuple) else (answer, {})

    def on(self, path: str) -> list[Captured]:
        """The requests received on ``path``."""
        with self.lock:
            return [c for c in self.received if c.path == path]

    def unique(self, path: str) -> int:
        """How many distinct webhook ids ``path`` received (cheap)."""
        with self.lock:
            return len(self.seen.get(path, ()))

    def ids(self, path: str) -> list[str]:
        """The webhook ids received on ``path``, in arrival order (duplicates kept)."""
        return [c.webhook_id for c in self.on(path)]


async def wait_for(
    check: Callable[[], Any], timeout_s: float = 15.0, what: str = "condition", every_s: float = 0.02
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(every_s)


def job_spec(webhook: dict[str, Any] | None = None) -> JobSpec:
    """A pose spec, optionally with a per-job webhook."""
    body: dict[str, Any] = {"kind": "pose", "inputs": {"video": {"upload_id": "upl_1"}}}
    if webhook is not None:
        body["webhook"] = webhook
    return parse_job_spec(body)


async def create_job(jobs: KeyValue, tenant: str, spec: JobSpec | None = None) -> str:
    """Write a job record (as the gateway does) and return its id."""
    job_id = new_id("job")
    record = JobRecord.new(job_id, tenant, spec or job_spec(), datetime.now(UTC))
    await jobs.create(tenant_key(tenant, job_id), record.model_dump_json().encode())
    return job_id


async def create_endpoint(webhooks: KeyValue, tenant: str, url: str, events: list[str] | None = None) -> WebhookRecord:
    """Write a webhook endpoint record (as the gateway does)."""
    now = datetime.now(UTC)
    record = WebhookRecord(
        id=new_id("wh"),
        tenant=tenant,
        url=url,
        events=events or ["job.*"],
        secret=new_webhook_secret(),
        created_at=now,
        updated_at=now,
    )
    await webhooks.create(tenant_key(tenant, record.id), record.model_dump_json().encode())
    return record


async def read_endpoint(webhooks: KeyValue, tenant: str, endpoint_id: str) -> WebhookRecord:
    """The endpoint's record as stored now."""
    entry = await webhooks.get(tenant_key(tenant, endpoint_id))
    assert entry.value is not None
    return WebhookRecord.model_validate_json(entry.value)


def job_event(tenant: str, job_id: str, type_: EventType, payload: BaseModel | None = None) -> EventEnvelope:
    """A job event with a sensible default payload."""
    defaults: dict[EventType, BaseModel] = {
        EventType.JOB_LOG: JobLogPayload(message="hello"),
        EventType.JOB_PROGRESS: JobProgressPayload(fraction=0.5),
        EventType.JOB_SUCCEEDED: JobSucceededPayload(),
        EventType.JOB_CREATED: JobCreatedPayload(spec=job_spec()),
    }
    return make_event(
        type_, payload or defaults[type_], tenant=tenant, source="test", job_id=job_id, kind="pose", attempt=1
    )


async def publish(js: JetStreamContext, subjects: Subjects, event: EventEnvelope) -> int:
    """Publish a job event as the platform does; its stream sequence."""
    assert event.job_id is not None
    subject = subjects.job_event(event.tenant, event.job_id, job_event_name(event.type))
    ack = await js.publish(subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.id})
    return int(ack.seq)


class _FastHttp(asyncio.Protocol):
    """A minimal HTTP/1.1 server protocol for POSTs with Content-Length: cheap enough for load tests."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            size = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + size:
                return
            body, self.buffer = self.buffer[end + 4 : end + 4 + size], self.buffer[end + 4 + size :]
            status, _ = self.receiver.record(lines[0].split(" ")[1], headers, body)
            assert self.transport is not None
            self.transport.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())


async def serve_fast(receiver: Receiver) -> tuple[asyncio.Server, str]:
    """Serve ``receiver`` with :class:`_FastHttp` in this event loop; the server and its base URL."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _FastHttp(receiver), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@dataclass
class ApiAudit:
    """The JetStream API requests the server reports (its ``api_audit`` advisories), by request subject."""

    subjects: list[str] = field(default_factory=list)

    @classmethod
    async def start(cls, nc: NatsClient) -> ApiAudit:
        """Record every API request from now on (flushed, so nothing after this call is missed)."""
        audit = cls()

        async def on_advisory(msg: Msg) -> None:
            audit.subjects.append(str(json.loads(msg.data).get("subject", "")))

        await nc.subscribe("$JS.EVENT.ADVISORY.API", cb=on_advisory)
        await nc.flush()
        return audit

    def naming(self, consumer: str) -> list[str]:
        """The requests whose subject names ``consumer`` (info, create, delete, ...)."""
        return [s for s in self.subjects if consumer in s.split(".")]

    def creations(self, consumer: str) -> list[str]:
        """The requests that created (or updated) ``consumer``."""
        return [s for s in self.naming(consumer) if ".CREATE." in s]
