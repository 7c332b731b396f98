"""Notifier benchmarks: webhook deliveries/s to a local receiver, SSE publish→client latency.

Starts its own :class:`EmbeddedNats` and runs the notifier in this process (``running()`` for the
webhooks, the ASGI app over uvicorn for SSE); the receiver is a minimal asyncio HTTP server in the
same process, so the figures are a lower bound for one notifier on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
from pydantic import SecretStr

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result
from contracts.api_webhooks import WebhookRecord, new_webhook_secret
from contracts.events import EventType, make_event
from contracts.ids import new_id, tenant_key
from contracts.job_events import JobLogPayload
from contracts.job_record import JobRecord
from contracts.job_specs import parse_job_spec
from contracts.streams import KV_APIKEYS, KV_JOBS, KV_WEBHOOKS, declarations
from contracts.subjects import Namespace, Subjects
from services.common.apikeys import ApiKeyStore
from services.common.config import NotifierSettings
from services.common.embedded_nats import EmbeddedNats
from services.common.http_server import EmbeddedHttpServer
from services.common.nats import apply_declarations
from services.notifier.app import create_app, running

EVENTS = 1000
SSE_EVENTS = 200
NOTES = [
    "notify: the notifier, the receiver and the SSE clients share one process and the machine's cores.",
    "webhooks: one endpoint is delivered in order, one at a time (max_ack_pending=1).",
]


class _Sink(asyncio.Protocol):
    """Answers every POST with 200 and counts them; sets ``done`` at ``target``."""

    count = 0
    target = 0
    done: asyncio.Event | None = None

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1").lower()
            size = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0]) if "content-length:" in head else 0
            if len(self.buffer) < end + 4 + size:
                return
            self.buffer = self.buffer[end + 4 + size :]
            _Sink.count += 1
            if _Sink.count >= _Sink.target and _Sink.done is not None:
                _Sink.done.set()
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")


def _event(job_id: str) -> bytes:
    payload = JobLogPayload(message="bench")
    return make_event(EventType.JOB_LOG, payload, tenant="acme", source="bench", job_id=job_id).to_json_bytes()


async def webhooks(url: str, endpoints: int) -> float:
    """Deliveries per second for ``EVENTS`` events to ``endpoints`` endpoints."""
    ns = Namespace("b" + uuid.uuid4().hex[:10])
    nc = await nats.connect(url)
    js = nc.jetstream()
    await apply_declarations(js, declarations(ns))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Sink, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    kv = await js.key_value(ns.bucket(KV_WEBHOOKS))
    now = datetime.now(UTC)
    for i in range(endpoints):
        rid = new_id("whe")
        record = WebhookRecord(
            id=rid, tenant="acme", url=f"{base}/{i}", events=["job.*"], secret=new_webhook_secret(),
            created_at=now, updated_at=now,
        )  # fmt: skip
        await kv.put(tenant_key("acme", rid), record.model_dump_json().encode())
    settings = NotifierSettings(
        profile="test", nats_url=url, namespace=ns.name, webhook_allow_hosts=["127.0.0.1"], log_level="WARNING"
    )
    subjects = Subjects(ns)
    _Sink.count, _Sink.target, _Sink.done = 0, EVENTS * endpoints, asyncio.Event()
    async with running(settings):
        start = time.perf_counter()
        futures = []
        for i in range(EVENTS):
            job_id = f"job_{i % 20}"
            body = _event(job_id)
            msg_id = json.loads(body)["id"]
            futures.append(
                await js.publish_async(subjects.job_event("acme", job_id, "log"), body, headers={"Nats-Msg-Id": msg_id})
            )
        await asyncio.gather(*futures)
        await asyncio.wait_for(_Sink.done.wait(), 120)
        elapsed = time.perf_counter() - start
    server.close()
    await nc.close()
    return EVENTS * endpoints / elapsed


async def sse_latency(url: str, clients: int) -> tuple[float, float]:
    """p50 and p99 publish→client latency (ms) with ``clients`` SSE clients on one job."""
    ns = Namespace("b" + uuid.uuid4().hex[:10])
    nc = await nats.connect(url)
    js = nc.jetstream()
    await apply_declarations(js, declarations(ns))
    _, key = await ApiKeyStore(await js.key_value(ns.bucket(KV_APIKEYS))).create("acme")
    job_id = new_id("job")
    spec = parse_job_spec({"kind": "pose", "inputs": {"video": {"upload_id": "upl_1"}}})
    record = JobRecord.new(job_id, "acme", spec, datetime.now(UTC))
    await (await js.key_value(ns.bucket(KV_JOBS))).put(tenant_key("acme", job_id), record.model_dump_json().encode())
    secret = SecretStr("bench-signing-secret-0123456789")
    settings = NotifierSettings(profile="test", nats_url=url, namespace=ns.name, signing_secret=secret)
    http_server = EmbeddedHttpServer()
    await http_server.start(create_app(settings))
    sent: dict[str, float] = {}
    latencies: list[float] = []
    complete = asyncio.Event()

    async def client(http: httpx.AsyncClient, ready: asyncio.Event) -> None:
        async with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            ready.set()
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    event_id = json.loads(line[5:])["id"]
                    latencies.append((time.perf_counter() - sent[event_id]) * 1000)
                    if len(latencies) >= SSE_EVENTS * clients:
                        complete.set()

    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(base_url=http_server.url, headers=headers, timeout=60, limits=limits) as http:
        readies = [asyncio.Event() for _ in range(clients)]
        tasks = [asyncio.create_task(client(http, ready)) for ready in readies]
        await asyncio.gather(*(ready.wait() for ready in readies))
        await asyncio.sleep(0.5)
        subject = Subjects(ns).job_event("acme", job_id, "log")
        for _ in range(SSE_EVENTS):
            body = _event(job_id)
            event_id = json.loads(body)["id"]
            sent[event_id] = time.perf_counter()
            await js.publish(subject, body, headers={"Nats-Msg-Id": event_id})
            await asyncio.sleep(0.005)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(complete.wait(), 30)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await http_server.stop()
    await nc.close()
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


async def measure() -> list[Result]:
    """Every notifier figure."""
    with tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp, EmbeddedNats(Path(tmp)) as server:
        one = await webhooks(server.url, 1)
        four = await webhooks(server.url, 4)
        p50, p99 = await sse_latency(server.url, 10)
    return [
        Result.compare("webhook deliveries/s, 1 endpoint", one, "deliveries/s", None),
        Result.compare("webhook deliveries/s, 4 endpoints", four, "deliveries/s", None, 1000.0),
        Result.compare("SSE publish→client p50, 10 clients", p50, "ms", None),
        Result.compare("SSE publish→client p99, 10 clients", p99, "ms", None),
    ]


def run() -> list[Result]:
    """Run the notifier benchmarks."""
    return asyncio.run(measure())


if __name__ == "__main__":
    for result in run():
        print(f"{result.name}: {result.value:.1f} {result.unit}")
