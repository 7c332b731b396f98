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
import os
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
from bench.dispatch_share import measure_scheduling
from bench.fold_stack import cpu_seconds, created_to_started, dispatchers, drain_rate, fold_rate
from contracts.route_table import RetryPolicy, Route
from contracts.streams import KV_APIKEYS
from services.common.apikeys import ApiKeyStore
from services.common.config import DispatcherSettings, GatewaySettings
from services.common.embedded_nats import EmbeddedNats, default_gomaxprocs
from services.common.http_server import EmbeddedHttpServer
from services.common.processes import usable_cores
from services.dispatcher.service import Dispatcher
from services.gateway.app import create_app

LATENCY_JOBS = 100
BURST_JOBS = 200
WARMUP_JOBS = 5
TIMEOUT_S = 60.0
SECRET = "bench-secret-0123456789abcdef0123456789"
BODY = {"kind": "pose", "inputs": {"video": {"url": "https://example.com/v.mp4"}}}
FOLD_PARTITIONS = 8
FOLD_JOBS = 200
FOLD_EVENTS = 20_000
SERIAL_FOLD_EVENTS = 3_000
FOLD_ROUNDS = 5
OFFERED_PER_S = 100.0
OFFERED_JOBS = 500
LOW_PER_S = 30.0
LOW_JOBS = 300
CORES = os.cpu_count() or 1
NOTES = [
    "dispatch: targets p50 ≤ 50 ms and p99 ≤ 200 ms from POST /v1/jobs to job.started (no-op worker, "
    "warm pool of 2 processes); lower is better, so the table's target column is left empty.",
    f"dispatch (fold): 2 `python -m services.dispatcher` processes per design, each on a fresh nats-server and "
    f"namespace in the same run: {FOLD_PARTITIONS} fold partitions (the default: each pinned to one replica at a "
    f"time, which keeps it for fold_pin_hold_s = 1 s and the records it wrote meanwhile, batches of up to "
    f"fold_batch = 512 events, one KV write per job and batch) against the serial fold (fold_partitions=0: one "
    f"event in flight, one KV compare-and-set write per event). Events folded/s from a backlog: {FOLD_JOBS} jobs "
    f"waiting on an upload and {FOLD_EVENTS:,} job.heartbeat events over them ({SERIAL_FOLD_EVENTS:,} for the "
    f"serial fold), each of which moves its job's record, stored before the dispatchers start; the rate at which "
    f"what is left to fold (as the server counts it) falls from 90 % to 10 %, median of {FOLD_ROUNDS} fresh runs. "
    f"While published: the same events published by one process (publish_async, 500 at a time) while the fold "
    f"runs, first publish to all folded, one run (bounded by that publisher on this machine). "
    f"job.created → job.started: {OFFERED_JOBS} jobs offered at {OFFERED_PER_S:.0f}/s "
    "(KV create + job.created, as the gateway does) to a no-op local route, pools of 2; target p50 ≤ 10 ms. "
    f"The same at {LOW_PER_S:.0f} jobs/s ({LOW_JOBS} jobs). CPU per job: what the {OFFERED_PER_S:.0f} jobs/s run "
    "cost, from its first job to a second after its last, in every process that carries it (nats-server, the 2 "
    f"dispatchers and their pools, and this load generator); {CORES} cores divided by that is the most jobs/s "
    "this machine could carry at that cost per job. The GOMAXPROCS rows: the partitioned run's figures against "
    "the same run (published fold, then the offered load) on a nats-server left at Go's default of every core.",
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


async def measure_fold() -> list[Result]:
    """The fold's figures with 2 dispatcher processes: partitioned (the default) against serial."""
    drained: dict[int, float] = {}
    live: dict[int, float] = {}
    p50: dict[int, float] = {}
    low: dict[int, float] = {}
    cpu_ms: dict[int, float] = {}
    for partitions, events in ((FOLD_PARTITIONS, FOLD_EVENTS), (0, SERIAL_FOLD_EVENTS)):
        rounds = []
        for _ in range(FOLD_ROUNDS):
            with tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp, EmbeddedNats(Path(tmp) / "nats") as nats:
                rounds.append(await drain_rate(nats.url, Path(tmp), partitions, FOLD_JOBS, events))
        drained[partitions] = statistics.median(rounds)
        with tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
            pids: list[int] = []
            async with dispatchers(server.url, Path(tmp), partitions, pids=pids) as (nc, ns):
                live[partitions] = await fold_rate(nc, ns, partitions, FOLD_JOBS, events)
                roots = [*pids, server.pid or 0]
                p50[partitions], cpu_ms[partitions] = await _offered(nc, ns, roots, OFFERED_PER_S, OFFERED_JOBS)
                low[partitions], _ = await _offered(nc, ns, roots, LOW_PER_S, LOW_JOBS)
    label = f"2 dispatcher processes, {FOLD_PARTITIONS} partitions (baseline: the serial fold)"
    go_default_p50, go_default_cpu = await _offered_with_gomaxprocs(usable_cores())
    go_label = (
        f"at {OFFERED_PER_S:.0f} jobs/s offered, 2 dispatcher processes, {FOLD_PARTITIONS} partitions, embedded "
        f"nats-server GOMAXPROCS={default_gomaxprocs()} (baseline: GOMAXPROCS={usable_cores()}, Go's default)"
    )
    return [
        Result.compare(
            f"fold: events folded/s from a backlog, {label}", drained[FOLD_PARTITIONS], "events/s", drained[0], 10_000.0
        ),
        Result.compare(
            f"fold: events folded/s while published (one publisher), {label}",
            live[FOLD_PARTITIONS],
            "events/s",
            live[0],
        ),
        Result.compare(
            f"dispatch p50 job.created → job.started at {OFFERED_PER_S:.0f} jobs/s offered, {label}, target ≤ 10 ms",
            p50[FOLD_PARTITIONS],
            "ms",
            p50[0],
        ),
        Result.compare(f"dispatch p50 created → started {go_label}", p50[FOLD_PARTITIONS], "ms", go_default_p50),
        Result.compare(f"dispatch CPU per job, {go_label}", cpu_ms[FOLD_PARTITIONS], "ms", go_default_cpu),
        Result.compare(
            f"dispatch p50 job.created → job.started at {LOW_PER_S:.0f} jobs/s offered, {label}",
            low[FOLD_PARTITIONS],
            "ms",
            low[0],
        ),
        Result.compare(
            f"dispatch CPU per job, every process, at {OFFERED_PER_S:.0f} jobs/s, {label}",
            cpu_ms[FOLD_PARTITIONS],
            "ms",
            cpu_ms[0],
        ),
        Result.compare(
            f"dispatch jobs/s this machine's {CORES} cores can carry (cores / CPU per job), {label}",
            CORES * 1000 / cpu_ms[FOLD_PARTITIONS],
            "jobs/s",
            CORES * 1000 / cpu_ms[0],
        ),
    ]


async def _offered_with_gomaxprocs(gomaxprocs: int) -> tuple[float, float]:
    """p50 and CPU per job at the offered load as :func:`measure_fold` takes them (after the same
    published fold), on a nats-server with ``gomaxprocs``."""
    with (
        tempfile.TemporaryDirectory(prefix="gpurelay-bench-") as tmp,
        EmbeddedNats(Path(tmp) / "nats", gomaxprocs=gomaxprocs) as server,
    ):
        pids: list[int] = []
        async with dispatchers(server.url, Path(tmp), FOLD_PARTITIONS, pids=pids) as (nc, ns):
            await fold_rate(nc, ns, FOLD_PARTITIONS, FOLD_JOBS, FOLD_EVENTS)
            return await _offered(nc, ns, [*pids, server.pid or 0], OFFERED_PER_S, OFFERED_JOBS)


async def _offered(nc: Any, ns: Any, roots: list[int], per_s: float, jobs: int) -> tuple[float, float]:
    """p50 job.created → job.started of ``jobs`` jobs offered at ``per_s``, and the CPU ms per job of
    ``roots`` (with their children) and this process meanwhile."""
    cpu_before, own_before = cpu_seconds(roots), time.process_time()
    latencies = await created_to_started(nc, ns, per_s, jobs)
    await asyncio.sleep(1.0)  # the last jobs' ends (their KV writes) are part of their cost
    spent = cpu_seconds(roots) - cpu_before + time.process_time() - own_before
    return statistics.median(latencies), spent * 1000 / jobs


def run() -> list[Result]:
    """Run the dispatch benchmark, print its table and return its figures."""
    results = asyncio.run(measure()) + asyncio.run(measure_fold())
    print(format_table(results))
    return results


if __name__ == "__main__":
    run()
