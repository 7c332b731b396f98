"""Dispatch latency: ``POST /v1/jobs`` to ``job.started`` through the real gateway and dispatcher.

Starts its own nats-server, the gateway (in-process, real HTTP on loopback) and one dispatcher with
a warm local pool whose ``pose`` route runs a no-op workload. Measures, one job at a time, the time
from sending the POST to receiving the job's ``job.started`` (a core subscription on
``jobs.*.*.started``), then the throughput of a burst of jobs from submission to ``job.succeeded``.
The baseline is the raw JetStream publish → consume round trip on the same server in the same run.
Then scheduling with 100 tenants queued, fair share against FIFO (:mod:`bench.dispatch_share`).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.js.api import StreamConfig

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, format_table, rate
from bench.dispatch_fold import FOLD_NOTES, measure_fold
from bench.dispatch_share import measure_scheduling
from contracts.route_table import RetryPolicy, Route
from contracts.streams import KV_APIKEYS
from services.common.auth.apikeys import ApiKeyStore
from services.common.http_server import EmbeddedHttpServer
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatcherSettings
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings

LATENCY_JOBS = 100
BURST_JOBS = 200
WARMUP_JOBS = 5
TIMEOUT_S = 60.0
SECRET = "bench-secret-0123456789abcdef0123456789"
BODY = {"kind": "pose", "inputs": {"video": {"url": "https://example.com/v.mp4"}}}
NOTES = [
    "dispatch: targets p50 ≤ 50 ms and p99 ≤ 200 ms from POST /v1/jobs to job.started (no-op worker, "
    "warm pool of 2 processes); lower is better, so the table's target column is left empty.",
    *FOLD_NOTES,
    "dispatch (2026-11-27, run again after this day's cuts: a lone tenant's fair clock, completed uploads "
    "kept, job.queued lingering with the launch, the fold's held ack sent as the next batch arrives): 13.6 ms "
    "a job at 100 jobs/s against the serial fold's 14.2 in the same run (0.96x), 147 jobs/s for the 2 cores, "
    "POST → job.started p50 10.0 ms, p99 16.0 ms. The previous run's 17.6 ms (2026-11-26 18:30) came on a "
    "slower hour (its serial fold 14.4); the gain from these cuts is within the spread noted above and is "
    "not claimed from this run.",
]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def jetstream_round_trip(url: str, count: int = 200) -> float:
    """p50 (ms) of one JetStream publish until a push consumer delivers it."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH_RTT", subjects=["bench.rtt"]))
    got: asyncio.Queue[float] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        got.put_nowait(time.perf_counter())

    sub = await js.subscribe("bench.rtt", cb=on_msg, manual_ack=False)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await js.publish("bench.rtt", b"x")
        samples.append((await asyncio.wait_for(got.get(), 5) - start) * 1000)
    await sub.unsubscribe()
    await nc.close()
    return statistics.median(samples)


async def measure() -> list[Result]:
    """Every figure of this benchmark against a fresh stack."""
    with (
        tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp,
        EmbeddedNats(Path(tmp) / "nats") as server,
    ):
        http = EmbeddedHttpServer()
        common: dict[str, Any] = {"profile": "test", "nats_url": server.url, "data_dir": Path(tmp) / "data"}
        common |= {"signing_secret": SECRET, "ingest_token_secret": SECRET, "log_level": "WARNING"}
        gateway = GatewaySettings(url=http.url, allow_url_inputs=True, **common)
        await http.start(create_app(gateway))
        route = Route(
            backend="local",
            function="pose",
            local="bench.noop_workload:noop",
            concurrency=64,
            retries=RetryPolicy(max_attempts=1),
        )
        dispatcher = Dispatcher(DispatcherSettings(local_pool_size=2, **common), routes={"pose": route})
        await dispatcher.start()
        nc = await nats.connect(server.url)
        try:
            _, key = await ApiKeyStore(await nc.jetstream().key_value(KV_APIKEYS)).create("bench")
            started: dict[str, float] = {}
            done: dict[str, float] = {}
            waiters: dict[str, asyncio.Event] = {}
            burst: set[str] = set()
            burst_done = asyncio.Event()

            async def on_event(msg: Any) -> None:
                job_id = msg.subject.split(".")[2]
                (started if msg.subject.endswith("started") else done)[job_id] = time.perf_counter()
                if job_id in waiters:
                    waiters[job_id].set()
                if burst and burst <= done.keys():
                    burst_done.set()

            await nc.subscribe("jobs.*.*.started", cb=on_event)
            await nc.subscribe("jobs.*.*.succeeded", cb=on_event)
            await nc.flush()
            async with httpx.AsyncClient(base_url=http.url, headers={"Authorization": f"Bearer {key}"}) as client:

                async def one() -> float:
                    start = time.perf_counter()
                    response = await client.post("/v1/jobs", json=BODY)
                    job_id = response.json()["id"]
                    event = waiters.setdefault(job_id, asyncio.Event())
                    if job_id not in started:
                        await asyncio.wait_for(event.wait(), TIMEOUT_S)
                    return (started[job_id] - start) * 1000

                for _ in range(WARMUP_JOBS):
                    await one()
                latencies = [await one() for _ in range(LATENCY_JOBS)]
                begin = time.perf_counter()
                responses = await asyncio.gather(*(client.post("/v1/jobs", json=BODY) for _ in range(BURST_JOBS)))
                burst.update(r.json()["id"] for r in responses)
                if not burst <= done.keys():
                    await asyncio.wait_for(burst_done.wait(), TIMEOUT_S)
                throughput = rate(BURST_JOBS, max(done[j] for j in burst) - begin)
            baseline = await jetstream_round_trip(server.url)
            sharing = await measure_scheduling(server.url, Path(tmp) / "sharing")
        finally:
            await nc.close()
            await dispatcher.stop()
            await http.stop()
    p50, p99 = _quantile(latencies, 0.5), _quantile(latencies, 0.99)
    return [
        Result.compare(
            "dispatch p50 POST /v1/jobs → job.started (baseline: JetStream pub→consume p50)",
            p50,
            "ms",
            baseline,
        ),
        Result.compare(
            "dispatch p99 POST /v1/jobs → job.started (baseline: JetStream pub→consume p50)",
            p99,
            "ms",
            baseline,
        ),
        Result.compare(f"dispatch throughput, {BURST_JOBS} jobs POST → succeeded", throughput, "jobs/s", None),
        *sharing,
    ]


def run() -> list[Result]:
    """Run the dispatch benchmark, print its table and return its figures."""
    results = asyncio.run(measure()) + asyncio.run(measure_fold())
    print(format_table(results))
    return results


if __name__ == "__main__":
    run()
