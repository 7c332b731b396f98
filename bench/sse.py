"""SSE benchmark: the shared live tail against one consumer per connection, 1 to 10,000 clients.

The notifier runs as its own process (``python -m services.notifier``, see ``bench/webhooks.py``), so
the load generator does not share its GIL; one process per design in the same run:
``GPURELAY_SSE_FANOUT=shared`` (one JOBS consumer per process, fanned out in memory) and the baseline
``per_connection`` (an ephemeral consumer per stream). Clients are raw asyncio HTTP/1.1 streaming
readers (a minimal SSE parser, not httpx), each on its own job's stream ``GET /v1/jobs/{id}/events``.
A publisher puts ``job.log`` events into JOBS at a fixed aggregate rate of 1,000 events/s, spread over
the clients' jobs (1 client: 1,000/s on one job; 1,000 clients: 1/s each; 10,000: 0.1/s each). Each
event's message carries its publish time (``time.perf_counter``, the same clock in this process), and
latency = receipt − publish. A raw nats-py core subscriber on the same subjects gives the floor.
RSS per connection = (notifier VmRSS with N connected clients − VmRSS before any) / N. The soft
open-file limit is raised for the 10,000 sockets on each side (the notifier inherits it).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPEATS, Result, median
from bench.webhooks import TENANT, NotifierProcess, add_jobs, event_body
from contracts.ids import new_id
from contracts.streams import KV_APIKEYS, declarations
from contracts.subjects import Namespace, Subjects
from services.common.auth.apikeys import ApiKeyStore
from services.common.nats.declarations import apply_declarations
from services.common.nats.server.embedded import EmbeddedNats

RATE = 1000  # events/s, aggregate
SECONDS = 3.0
CLIENTS = (1, 100, 1000, 10_000)
MODES = ("shared", "per_connection")
P99_TARGET_MS = {1: 50, 100: 50, 1000: 50, 10_000: 100}
RSS_TARGET_MB = {1000: 300, 10_000: 1000}
SECRET = "bench-signing-secret-0123456789"
CONNECT_TRIES = 10
STAMP = re.compile(rb'"message":"t=([0-9.]+)"')
NOTES = [
    "sse: the notifier runs in its own process; the clients (raw asyncio readers), the publisher and the "
    "nats-py baseline subscriber share the bench process; nats-server is a third; all on the same shared, "
    f"noisy cores. Each client follows its own job; events are published at {RATE:,}/s in total, spread over "
    f"the clients' jobs, for {SECONDS:.0f} s: p50/p99 are over every received event, the median of {REPEATS} "
    "rounds for 1 and 100 clients, one round for 1,000 and 10,000. Value: the shared live tail (default); "
    "baseline: one JetStream consumer per connection, in its own notifier process in the same run.",
    "sse: latency and memory targets are upper bounds (p99 ≤ 50 ms up to 1,000 clients, ≤ 100 ms over "
    "10,000; notifier RSS ≤ 1 GB with 10,000 connections): the table's 'meets target' column only handles "
    "lower bounds, so these figures carry the bound in their name instead.",
]


class Client:
    """One SSE connection read with asyncio streams; records the latency of every ``data:`` line."""

    last_receipt = 0.0  # perf_counter of the latest event any client received
    retries = 0  # stream starts refused (503 while the notifier is busy) and tried again

    def __init__(self, url: str, path: str, key: str, latencies: list[float]) -> None:
        self.url, self.path, self.key, self.latencies = url, path, key, latencies
        self.connected = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        """Whether the stream is still open (the notifier did not end it)."""
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        """Connect and read in the background."""
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {self.key}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        )
        for attempt in range(CONNECT_TRIES):  # a busy notifier refuses or answers 503: retry, as EventSource does
            status = b""
            try:
                reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
                writer.write(request.encode())
                status = await reader.readline()
            except OSError:
                pass
            else:
                if b" 200 " in status:
                    break
                writer.close()
            Client.retries += 1
            if attempt == CONNECT_TRIES - 1:
                raise RuntimeError(f"SSE answered {status!r}")
            await asyncio.sleep(0.5 * (attempt + 1))
        try:
            while await reader.readline() not in (b"\r\n", b""):
                pass
            self.connected.set()
            while line := await reader.readline():
                if b"data:" in line and (match := STAMP.search(line)):
                    Client.last_receipt = now = time.perf_counter()
                    self.latencies.append(now - float(match.group(1)))
        finally:
            writer.close()

    async def stop(self) -> None:
        """Cancel the reader."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, in ms."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else float("nan")


async def publish(nc: NatsClient, subjects: Subjects, jobs: list[str], seconds: float) -> int:
    """Publish ``job.log`` events at ``RATE``/s round-robin over ``jobs``; how many were published."""
    tick = 0.01
    per_tick = max(1, int(RATE * tick))
    start, sent = time.perf_counter(), 0
    while (now := time.perf_counter()) - start < seconds:
        for _ in range(per_tick):
            job_id = jobs[sent % len(jobs)]
            event_id, body = event_body(job_id, f"t={time.perf_counter():.6f}")
            await nc.publish(subjects.job_event(TENANT, job_id, "log"), body, headers={"Nats-Msg-Id": event_id})
            sent += 1
        await nc.flush()
        await asyncio.sleep(max(0.0, start + sent / RATE - time.perf_counter()))
        del now
    return sent


async def one_round(
    nc: NatsClient,
    subjects: Subjects,
    clients: list[Client],
    jobs: list[str],
    latencies: list[float],
    base: list[float],
) -> tuple[float, float, float, float, float]:
    """p50, p99 (ms), delivered events/s, and the baseline subscriber's p50, p99 (ms)."""
    latencies.clear()
    base.clear()
    start = time.perf_counter()
    sent = await publish(nc, subjects, jobs, SECONDS)
    n = len(jobs)
    expected = sum(sent // n + (1 if i < sent % n else 0) for i, c in enumerate(clients) if c.alive)
    deadline = time.perf_counter() + 10
    while len(latencies) < expected and time.perf_counter() < deadline:  # noqa: ASYNC110 - polling a plain list
        await asyncio.sleep(0.05)
    elapsed = Client.last_receipt - start
    return (
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        len(latencies) / elapsed,
        *(
            percentile(base, 0.5),
            percentile(base, 0.99),
        ),
    )


Figures = dict[str, float]


async def _connect(js: JetStreamContext, stream: str, clients: list[Client], mode: str) -> None:
    """Start ``clients`` (in waves, so the notifier's accept queue keeps up) and wait until each is following."""
    for i, client in enumerate(clients):
        client.start()
        if i % 100 == 99:
            await asyncio.sleep(0.1)
    await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 300)
    if mode == "per_connection":  # each stream makes its consumer after its first frame
        deadline = time.perf_counter() + 300
        while (await js.stream_info(stream)).state.consumer_count < len(clients) and time.perf_counter() < deadline:  # noqa: ASYNC110 - polling the server
            await asyncio.sleep(0.2)
    await asyncio.sleep(0.5 + len(clients) / 2000)


async def _mode(
    url: str, ns: Namespace, tmp: Path, key: str, nc: NatsClient, jobs: list[str], mode: str, base: list[float]
) -> dict[int, Figures]:
    """Every client count against one notifier process in ``mode``: latency, rate, RSS, consumers."""
    js, subjects, out = nc.jetstream(), Subjects(ns), {}
    async with NotifierProcess(
        url, ns.name, tmp, signing_secret=SECRET, sse_max_streams_per_tenant=str(max(CLIENTS)), sse_fanout=mode
    ) as n:
        await asyncio.sleep(1.0)
        rss_before = n.rss_bytes()
        latencies: list[float] = []
        for index, count in enumerate(CLIENTS):
            # each configuration has its own jobs: a new client does not replay earlier rounds' events
            mine = jobs[sum(CLIENTS[:index]) : sum(CLIENTS[: index + 1])]
            clients = [Client(n.url, f"/v1/jobs/{job}/events", key, latencies) for job in mine]
            await _connect(js, ns.stream("JOBS"), clients, mode)
            figures: Figures = {
                "rss": n.rss_bytes(),
                "rss_before": rss_before,
                "held": sum(c.alive for c in clients),
                "consumers": (await js.stream_info(ns.stream("JOBS"))).state.consumer_count,
            }
            repeats = REPEATS if count < 1000 else 1
            rounds = [await one_round(nc, subjects, clients, mine, latencies, base) for _ in range(repeats)]
            for i, name in enumerate(("p50", "p99", "per_s", "base50", "base99")):
                figures[name] = median(r[i] for r in rounds)
            out[count] = figures
            await asyncio.gather(*(c.stop() for c in clients))
            await asyncio.sleep(1.0 + count / 5000)
    return out


def _results(shared: dict[int, Figures], per_conn: dict[int, Figures]) -> list[Result]:
    results: list[Result] = []
    for count in CLIENTS:
        s, b = shared[count], per_conn[count]
        label = f"{count:,} client{'s' if count > 1 else ''}, {RATE:,} events/s in total, shared tail"
        bound = P99_TARGET_MS[count]
        results += [
            Result.compare(f"SSE publish→client p50, {label}", s["p50"], "ms", b["p50"]),
            Result.compare(f"SSE publish→client p99, {label} (target ≤ {bound} ms)", s["p99"], "ms", b["p99"]),
            Result.compare(f"SSE events/s delivered, {label}", s["per_s"], "events/s", b["per_s"]),
        ]
    raw = shared[max(CLIENTS)]
    results.append(Result.compare("SSE NATS core subscriber p99 (the floor), same events", raw["base99"], "ms", None))
    for count in (1000, max(CLIENTS)):
        s, b = shared[count], per_conn[count]
        results += [
            Result.compare(
                f"SSE notifier RSS with {count:,} connections, shared tail (target ≤ {RSS_TARGET_MB[count]} MB)",
                s["rss"] / 1e6,
                "MB",
                b["rss"] / 1e6,
            ),
            Result.compare(
                f"SSE RSS per connection, {count:,} clients, shared tail",
                (s["rss"] - s["rss_before"]) / count / 1024,
                "KiB",
                (b["rss"] - b["rss_before"]) / count / 1024,
            ),
            Result.compare(
                f"SSE JetStream consumers on JOBS with {count:,} connections, shared tail",
                s["consumers"],
                "consumers",
                b["consumers"],
            ),
        ]
    held = shared[max(CLIENTS)]["held"]
    results.append(
        Result.compare(
            f"SSE connections held of {max(CLIENTS):,}, shared tail", held, "connections", None, float(max(CLIENTS))
        )
    )
    return results


def raise_open_files(wanted: int) -> None:
    """Raise this process's soft open-file limit towards ``wanted`` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def measure() -> list[Result]:
    """Every SSE figure: the shared live tail, with the per-connection consumers as the baseline."""
    raise_open_files(2 * max(CLIENTS) + 1024)  # the clients here, the connections in the notifier
    by_mode: dict[str, dict[int, Figures]] = {}
    with tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp, EmbeddedNats(Path(tmp)) as server:
        ns = Namespace("b" + uuid.uuid4().hex[:10])
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await apply_declarations(js, declarations(ns))
        _, key = await ApiKeyStore(await js.key_value(ns.bucket(KV_APIKEYS))).create(TENANT)
        base: list[float] = []

        async def on_msg(msg: Msg) -> None:
            if match := STAMP.search(msg.data):
                base.append(time.perf_counter() - float(match.group(1)))

        await nc.subscribe(ns.subject(f"jobs.{TENANT}.*.log"), cb=on_msg)
        for mode in MODES:
            jobs = [new_id("job") for _ in range(sum(CLIENTS))]
            await add_jobs(js, ns, jobs)
            by_mode[mode] = await _mode(server.url, ns, Path(tmp), key, nc, jobs, mode, base)
        await nc.close()
    return _results(by_mode["shared"], by_mode["per_connection"])


def run() -> list[Result]:
    """Run the SSE benchmark."""
    return asyncio.run(measure())


if __name__ == "__main__":
    from bench.common import format_table

    print(format_table(run()))
