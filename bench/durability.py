"""Durability's cost: JetStream fsyncing every write before its ack (``sync_interval: always``, what gpurelay
runs) against NATS' default of once every 2 minutes, in the same run.

Each round starts, for each setting, a fresh stack on a fresh store: nats-server (file store), the
gateway in this process (real HTTP on loopback) and one dispatcher with a warm local pool of 2 whose
``pose`` route runs a no-op workload. It measures (1) an awaited JetStream publish of a ~300-byte
event into a file stream, one at a time, until its ack; (2) ``POST /v1/jobs`` until its ``201``, one
at a time (a KV create and the ``job.created`` publish, both acknowledged); (3) a burst of jobs from
``POST`` to ``job.succeeded``; and (4) on another fresh server, the dispatcher's fold draining a
backlog (:func:`bench.fold_stack.drain_rate`: 2 dispatcher processes, 8 partitions, as the fold
benchmark). Rounds alternate which setting goes first; each figure is the median of the rounds, and
:data:`NOTES` gives every round's value (the spread).
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
from nats.js.api import StorageType, StreamConfig

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPEATS, Result, format_table, rate
from bench.dispatch import BODY, BURST_JOBS, SECRET
from bench.dispatch_fold import FOLD_EVENTS, FOLD_JOBS, FOLD_PARTITIONS, OFFERED_PER_S, offered_load
from bench.fold_stack import cpu_seconds, created_to_started, dispatchers, drain_rate
from contracts.route_table import RetryPolicy, Route
from contracts.streams import KV_APIKEYS
from services.common.auth.apikeys import ApiKeyStore
from services.common.http_server import EmbeddedHttpServer
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatcherSettings
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings

SETTINGS = ("always", "2m")
"""What gpurelay runs, and NATS' default (the baseline)."""
PUBLISHES = 1_000
POSTS = 100
CPU_JOBS = 300
WARMUP = 5
TIMEOUT_S = 120.0
EVENT = b'{"specversion":"1.0","type":"job.progress","data":{"fraction":0.5}}' + b" " * 230  # ~300 bytes
NOTES: list[str] = [
    f"durability: value = sync_interval always (every JetStream write fsynced before its ack), baseline = "
    f"'2m' (NATS' default); each round a fresh nats-server (file store), the gateway in the bench process and "
    f"a dispatcher with a pool of 2 running a no-op, on the same shared cores; {PUBLISHES} awaited publishes, "
    f"{POSTS} POST /v1/jobs one at a time, {BURST_JOBS} jobs POSTed at once to job.succeeded; the fold's "
    f"backlog drain as the fold benchmark measures it ({FOLD_JOBS} jobs, {FOLD_EVENTS:,} heartbeats), on a fresh "
    f"server of its own; CPU per job as the dispatch benchmark measures it ({CPU_JOBS} jobs offered at "
    f"{OFFERED_PER_S:.0f}/s to 2 dispatchers, {FOLD_PARTITIONS} partitions, every process) and nats-server's "
    f"share of it, on a third fresh server; the median of {REPEATS} rounds, alternating which setting runs "
    "first. Lower is better for the latencies.",
    "durability, where the cost goes: an awaited publish waits for its fsync (0.15 to 0.3 ms more on this "
    "VM's ext4 disk). POST /v1/jobs → 201 took the same under both settings on 2026-11-25 (~16 ms; it was ~48 "
    "ms until the embedded HTTP server turned Nagle off: its listener skipped TCP_NODELAY, so each keep-alive "
    "answer after the first waited for the client's delayed ACK); on 2026-11-27, a faster day, a few ms more "
    "at p50 with always (its KV create and job.created each wait for an fsync; every round's values below). "
    "jobs/s and the fold's backlog drain fall as each of the fold's record writes (KV, a JetStream write each) "
    "waits for its own fsync; this VM's disk varies from hour to hour (113 and 51 jobs/s with always, on the "
    "same code), so compare within a run. A 3-node cluster's R3 writes fsync on each replica; not measured "
    "here (one machine).",
    "durability, CPU (2026-11-27, three runs within the hour): at 100 jobs/s, every process 11.0-12.6 ms a "
    "job against 8.3-9.8 with 2m, nats-server's share 4.4-4.8 against 2.4-3.0: the fsyncs of a job's ~17 "
    "stream and KV writes (its 5 events, their 5 copies in JOBS_FOLD until 2026-11-30, the record's 2, the "
    "queue entry's 3, the ticket) cost ~2 ms of the server's CPU, so issue 34's ≤ 4 ms a job over every "
    "process is below what nats-server alone spends with every write fsynced before its ack; what is left to "
    "cut is writes and messages per job.",
]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def publish_latencies(url: str) -> list[float]:
    """ms of each awaited JetStream publish into a file stream, one at a time."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="BENCH_SYNC", subjects=["bench.sync.>"], storage=StorageType.FILE))
        samples = []
        for i in range(PUBLISHES + WARMUP):
            start = time.perf_counter()
            await js.publish(f"bench.sync.{i % 64}", EVENT)
            samples.append((time.perf_counter() - start) * 1000)
        return samples[WARMUP:]
    finally:
        await nc.close()


async def stack_figures(root: Path, sync_interval: str) -> dict[str, float]:
    """Every figure of one setting on a fresh stack."""
    with EmbeddedNats(root / "nats", sync_interval=sync_interval) as server:
        publishes = await publish_latencies(server.url)
        http = EmbeddedHttpServer()
        common: dict[str, Any] = {"profile": "test", "nats_url": server.url, "data_dir": root / "data"}
        common |= {"signing_secret": SECRET, "ingest_token_secret": SECRET, "log_level": "WARNING"}
        await http.start(create_app(GatewaySettings(url=http.url, allow_url_inputs=True, **common)))
        route = Route(
            backend="local", function="pose", local="bench.noop_workload:noop", concurrency=64,
            retries=RetryPolicy(max_attempts=1),
        )  # fmt: skip
        dispatcher = Dispatcher(DispatcherSettings(local_pool_size=2, **common), routes={"pose": route})
        await dispatcher.start()
        nc = await nats.connect(server.url)
        try:
            _, key = await ApiKeyStore(await nc.jetstream().key_value(KV_APIKEYS)).create("bench")
            posts, throughput = await _jobs(nc, http.url, key)
        finally:
            await nc.close()
            await dispatcher.stop()
            await http.stop()
    (root / "fold").mkdir(parents=True, exist_ok=True)
    with EmbeddedNats(root / "fold-nats", sync_interval=sync_interval) as server:
        folded = await drain_rate(server.url, root / "fold", FOLD_PARTITIONS, FOLD_JOBS, FOLD_EVENTS)
    cpu, nats_cpu = await dispatch_cpu(root / "cpu", sync_interval)
    return {
        "cpu": cpu,
        "nats cpu": nats_cpu,
        "fold": folded,
        "publish p50": _quantile(publishes, 0.5),
        "publish p99": _quantile(publishes, 0.99),
        "post p50": _quantile(posts, 0.5),
        "post p99": _quantile(posts, 0.99),
        "jobs/s": throughput,
    }


async def dispatch_cpu(root: Path, sync_interval: str) -> tuple[float, float]:
    """CPU ms per job of :data:`CPU_JOBS` jobs offered at the dispatch benchmark's rate, every process, and
    nats-server's share of it (how much of a job's cost is the server's, its fsyncs included)."""
    (root / "nats").mkdir(parents=True, exist_ok=True)
    with EmbeddedNats(root / "nats", sync_interval=sync_interval) as server:
        pids: list[int] = []
        async with dispatchers(server.url, root, FOLD_PARTITIONS, pids=pids) as (nc, ns):
            await created_to_started(nc, ns, 20.0, 40)  # warm-up: the pools up, the partitions pinned once
            nats_before = cpu_seconds([server.pid or 0])
            _, cpu = await offered_load(nc, ns, [*pids, server.pid or 0], OFFERED_PER_S, CPU_JOBS)
            return cpu, (cpu_seconds([server.pid or 0]) - nats_before) * 1000 / CPU_JOBS


async def _jobs(nc: Any, url: str, key: str) -> tuple[list[float], float]:
    """ms of each POST /v1/jobs → 201 one at a time, then jobs/s of a burst from POST to job.succeeded."""
    done: dict[str, float] = {}
    burst: set[str] = set()
    burst_done = asyncio.Event()

    async def on_succeeded(msg: Any) -> None:
        done[msg.subject.split(".")[2]] = time.perf_counter()
        if burst and burst <= done.keys():
            burst_done.set()

    await nc.subscribe("jobs.*.*.succeeded", cb=on_succeeded)
    await nc.flush()
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT_S) as client:
        posts = []
        for _ in range(POSTS + WARMUP):
            start = time.perf_counter()
            response = await client.post("/v1/jobs", json=BODY)
            assert response.status_code == 201, response.text
            posts.append((time.perf_counter() - start) * 1000)
        begin = time.perf_counter()
        responses = await asyncio.gather(*(client.post("/v1/jobs", json=BODY) for _ in range(BURST_JOBS)))
        burst.update(r.json()["id"] for r in responses)
        if not burst <= done.keys():
            await asyncio.wait_for(burst_done.wait(), TIMEOUT_S)
    return posts[WARMUP:], rate(BURST_JOBS, max(done[j] for j in burst) - begin)


async def measure(rounds: int = REPEATS) -> list[Result]:
    """The figures of both settings over ``rounds`` alternating rounds."""
    figures: dict[str, list[dict[str, float]]] = {setting: [] for setting in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="gpurelay-bench-sync-") as tmp:
        for index in range(rounds):
            order = SETTINGS if index % 2 == 0 else SETTINGS[::-1]
            for setting in order:
                figures[setting].append(await stack_figures(Path(tmp) / f"{index}-{setting}", setting))
    names = {
        "publish p50": ("JetStream publish → ack p50, one at a time", "ms"),
        "publish p99": ("JetStream publish → ack p99, one at a time", "ms"),
        "post p50": ("POST /v1/jobs → 201 p50, one at a time", "ms"),
        "post p99": ("POST /v1/jobs → 201 p99, one at a time", "ms"),
        "jobs/s": (f"jobs/s, {BURST_JOBS} jobs POST → succeeded", "jobs/s"),
        "fold": (f"fold: events/s from a backlog, 2 dispatchers, {FOLD_PARTITIONS} partitions", "events/s"),
        "cpu": (f"dispatch CPU per job at {OFFERED_PER_S:.0f} jobs/s offered, every process", "ms"),
        "nats cpu": (f"nats-server's CPU per job at {OFFERED_PER_S:.0f} jobs/s offered", "ms"),
    }
    results = []
    for figure, (label, unit) in names.items():
        always = [round_[figure] for round_ in figures["always"]]
        default = [round_[figure] for round_ in figures["2m"]]
        name = f"durability: {label}, sync_interval always (baseline: 2m, NATS' default)"
        results.append(Result.compare(name, statistics.median(always), unit, statistics.median(default)))
        NOTES.append(
            f"durability: {label} ({unit}), every round: always {', '.join(f'{v:.2f}' for v in always)}; "
            f"2m {', '.join(f'{v:.2f}' for v in default)}."
        )
    return results


def run() -> list[Result]:
    """Measure both settings; print the table and every round's values (the spread); the figures."""
    results = asyncio.run(measure())
    print(format_table(results), *NOTES[1:], sep="\n")
    return results


if __name__ == "__main__":
    run()
