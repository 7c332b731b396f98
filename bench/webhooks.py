"""Webhook benchmark: deliveries/s from the notifier to a local receiver, 1 and 4 endpoints.

The notifier runs as its own process (``python -m services.notifier``, settings from the
environment) against an :class:`EmbeddedNats`, so it does not share a GIL with the load generator.
The receiver is a minimal asyncio HTTP/1.1 server in this process that answers every POST with 200,
at once or (the slow endpoint) 50 ms later. The fast figures' baseline is the same receiver driven by
a plain ``httpx.AsyncClient`` posting one request at a time over one keep-alive connection; the slow
endpoint's is the notifier sending one delivery at a time (``webhook_endpoint_concurrency=1``).

:class:`NotifierProcess` is shared with ``bench/sse.py``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import httpx
import nats
from nats.js import JetStreamContext

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPEATS, Result, median
from contracts.api.webhooks import WebhookRecord, new_webhook_secret
from contracts.events.jobs import JobLogPayload
from contracts.events.registry import EventType, make_event
from contracts.ids import new_id, tenant_key
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.streams import KV_JOBS, KV_WEBHOOKS, declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.declarations import apply_declarations
from services.common.nats.server.embedded import EmbeddedNats
from services.common.nats.server.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 1000
JOBS = 20
SLOW_S = 0.05
SLOW_EVENTS = 2000
SLOW_JOBS = 100
SLOW_SERIAL_EVENTS = 100
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
TENANT = "acme"
NOTES = [
    "webhooks: the notifier runs in its own process (uvicorn, `python -m services.notifier`); the receiver "
    "(a raw asyncio HTTP/1.1 server answering 200) and the publisher share the bench process; nats-server is "
    "a third process, all on the same cores. The machine is shared and noisy: each figure is the median of "
    f"{REPEATS} rounds of {EVENTS:,} events per endpoint.",
    "webhooks: deliveries keep per-job order, up to webhook_endpoint_concurrency (32) jobs in flight per "
    "endpoint; the fast figures' baseline = one httpx client posting to the same receiver one request at a "
    "time over one keep-alive connection.",
    f"webhooks: the slow receiver answers each request {SLOW_S * 1000:.0f} ms after it arrives; {SLOW_EVENTS:,} "
    f"events over {SLOW_JOBS} jobs per round. Its baseline is the same notifier sending one at a time "
    f"(webhook_endpoint_concurrency=1, the previous design; {SLOW_SERIAL_EVENTS} events per round).",
]


class NotifierProcess:
    """``python -m services.notifier`` in a child process, configured by ``GPURELAY_*`` variables."""

    def __init__(self, nats_url: str, namespace: str, data_dir: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
        env.update(
            GPURELAY_PROFILE="test",
            GPURELAY_NATS_URL=nats_url,
            GPURELAY_NAMESPACE=namespace,
            GPURELAY_DATA_DIR=str(data_dir),
            GPURELAY_HOST="127.0.0.1",
            GPURELAY_PORT=str(self.port),
            GPURELAY_LOG_LEVEL="WARNING",
        )
        env.update({f"GPURELAY_{k.upper()}": v for k, v in settings.items()})
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self.process is not None
        return self.process.pid

    def rss_bytes(self) -> int:
        """The child's resident set size (``VmRSS`` in ``/proc/PID/status``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start the child and wait until ``/readyz`` answers 200."""
        self.process = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
            [sys.executable, "-m", "services.notifier"], cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the notifier exited with {self.process.returncode}")
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        self.stop()
        raise TimeoutError("the notifier did not become ready")

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    async def __aenter__(self) -> NotifierProcess:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Sink(asyncio.Protocol):
    """Answers every HTTP/1.1 request with 200 and counts them; ``done`` is set at ``target``."""

    count = 0
    target = 0
    done: asyncio.Event | None = None
    delay_s = 0.0
    """How long each answer takes (a slow receiver); 0: at once."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            size = 0
            if (at := head.find(b"content-length:")) >= 0:
                size = int(head[at + 15 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + size:
                return
            self.buffer = self.buffer[end + 4 + size :]
            Sink.count += 1
            if Sink.count >= Sink.target and Sink.done is not None:
                Sink.done.set()
            assert self.transport is not None
            if Sink.delay_s:
                asyncio.get_running_loop().call_later(Sink.delay_s, self.transport.write, OK)
            else:
                self.transport.write(OK)


def event_body(job_id: str, message: str = "bench") -> tuple[str, bytes]:
    """A ``job.log`` envelope: its id and JSON bytes."""
    payload = JobLogPayload(message=message)
    envelope = make_event(EventType.JOB_LOG, payload, tenant=TENANT, source="bench", job_id=job_id)
    return envelope.id, envelope.to_json_bytes()


async def add_jobs(js: JetStreamContext, ns: Namespace, job_ids: list[str]) -> None:
    """KV job records of ``TENANT`` (no per-job webhook), as the dispatcher would have written them."""
    kv = await js.key_value(ns.bucket(KV_JOBS))
    spec = parse_job_spec({"kind": "pose", "inputs": {"video": {"upload_id": "upl_1"}}})
    now = datetime.now(UTC)
    for job_id in job_ids:
        record = JobRecord.new(job_id, TENANT, spec, now)
        await kv.put(tenant_key(TENANT, job_id), record.model_dump_json().encode())


async def add_endpoints(js: JetStreamContext, ns: Namespace, base: str, count: int) -> None:
    """``count`` enabled KV endpoints of ``TENANT`` on ``{base}/{i}`` for every ``job.*`` event."""
    kv = await js.key_value(ns.bucket(KV_WEBHOOKS))
    now = datetime.now(UTC)
    for i in range(count):
        rid = new_id("whe")
        record = WebhookRecord(
            id=rid, tenant=TENANT, url=f"{base}/{i}", events=["job.*"], secret=new_webhook_secret(),
            created_at=now, updated_at=now,
        )  # fmt: skip
        await kv.put(tenant_key(TENANT, rid), record.model_dump_json().encode())


async def one_round(js: JetStreamContext, subjects: Subjects, endpoints: int, events: int, jobs: int) -> float:
    """Publish ``events`` events over ``jobs`` jobs; deliveries per second until the receiver got them all."""
    Sink.count, Sink.target, Sink.done = 0, events * endpoints, asyncio.Event()
    start = time.perf_counter()
    futures = []
    for i in range(events):
        job_id = f"job_{i % jobs}"
        event_id, body = event_body(job_id)
        subject = subjects.job_event(TENANT, job_id, "log")
        futures.append(await js.publish_async(subject, body, headers={"Nats-Msg-Id": event_id}))
    await asyncio.gather(*futures)
    await asyncio.wait_for(Sink.done.wait(), 90)
    return events * endpoints / (time.perf_counter() - start)


async def deliveries(
    nats_url: str, tmp: Path, endpoints: int, base: str, events: int = EVENTS, jobs: int = JOBS, **settings: str
) -> float:
    """Median deliveries/s over ``REPEATS`` rounds to ``endpoints`` endpoints (one notifier process)."""
    ns = Namespace("b" + uuid.uuid4().hex[:10])
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await apply_declarations(js, declarations(ns))
    await add_jobs(js, ns, [f"job_{i}" for i in range(jobs)])
    await add_endpoints(js, ns, base, endpoints)
    rates = []
    async with NotifierProcess(nats_url, ns.name, tmp, webhook_allow_hosts='["127.0.0.1"]', **settings):
        await one_round(js, Subjects(ns), endpoints, min(events, 200), jobs)  # warm-up: connections start
        for _ in range(REPEATS):
            rates.append(await one_round(js, Subjects(ns), endpoints, events, jobs))
    await nc.close()
    return median(rates)


async def plain_client(base: str, requests: int = 2000) -> float:
    """Requests/s of one httpx client posting to the receiver one at a time (the baseline)."""
    _, body = event_body("job_0")
    headers = {"content-type": "application/json"}

    async def once() -> float:
        Sink.count, Sink.target, Sink.done = 0, requests, None
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            await http.post("/warm", content=body, headers=headers)
            start = time.perf_counter()
            for _ in range(requests):
                await http.post("/0", content=body, headers=headers)
            return requests / (time.perf_counter() - start)

    return median([await once() for _ in range(REPEATS)])


async def measure() -> list[Result]:
    """Every webhook figure."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        baseline = await plain_client(base)
        with tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp, EmbeddedNats(Path(tmp)) as nats_server:
            one = await deliveries(nats_server.url, Path(tmp), 1, base)
            four = await deliveries(nats_server.url, Path(tmp), 4, base)
            Sink.delay_s = SLOW_S
            try:
                slow = await deliveries(nats_server.url, Path(tmp), 1, base, SLOW_EVENTS, SLOW_JOBS)
                serial = await deliveries(
                    nats_server.url, Path(tmp), 1, base, SLOW_SERIAL_EVENTS, SLOW_JOBS, webhook_endpoint_concurrency="1"
                )
            finally:
                Sink.delay_s = 0.0
    finally:
        server.close()
    slow_name = f"webhook deliveries/s, 1 endpoint answering in {SLOW_S * 1000:.0f} ms, {SLOW_JOBS} jobs"
    return [
        Result.compare("webhook deliveries/s, 1 endpoint (notifier process)", one, "deliveries/s", baseline, 2000.0),
        Result.compare("webhook deliveries/s, 4 endpoints (notifier process)", four, "deliveries/s", baseline, 2000.0),
        Result.compare(slow_name, slow, "deliveries/s", serial, 500.0),
    ]


def run() -> list[Result]:
    """Run the webhook benchmark."""
    return asyncio.run(measure())


if __name__ == "__main__":
    from bench.common import format_table

    print(format_table(run()))
