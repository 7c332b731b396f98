"""Dispatcher processes for the fold figures of ``bench/dispatch.py`` (a helper: no ``run()`` here).

Two ``python -m services.dispatcher`` processes on one namespace, partitioned fold
(``GPURELAY_FOLD_PARTITIONS``, the default) or the serial one (``0``, the baseline):

* **events folded/s**: jobs that wait on an upload that never comes (their record stays ``created``),
  then a burst of ``job.heartbeat`` events with increasing times over them, each of which moves its
  job's record (the serial fold writes KV once per event, the batched one once per job and batch);
  from the first publish until the fold has
  consumed everything (:func:`~services.dispatcher.fold.partitions.fold_settled`).
* **job.created → job.started**: jobs offered at a fixed rate (KV create + ``job.created``, as the
  gateway does) to a no-op local route; the time from publishing ``job.created`` to receiving the
  job's ``job.started``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.js.kv import KeyValue

from contracts.envelope import utc_now
from contracts.events.jobs import JobHeartbeatPayload
from contracts.events.registry import EventType, job_created_event, make_event
from contracts.ids import new_id, tenant_key
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.streams import KV_JOBS, declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.declarations import apply_declarations
from services.common.nats.publish import publish_event
from services.dispatcher.fold.partitions import fold_pending, fold_settled

ROOT = Path(__file__).resolve().parent.parent
TENANT = "bench"
ROUTES = """
profiles:
  dev:
    pose: {backend: local, function: pose, local: "bench.noop_workload:noop", timeout_s: 30, concurrency: 64}
"""
WAITING = {"kind": "pose", "inputs": {"video": {"upload_id": "upl_never"}}}
RUNS = {"kind": "pose", "inputs": {"video": {"url": "https://example.com/v.mp4"}}}
Prepare = Callable[[NatsClient, Namespace], Awaitable[None]]
_JOBS_KV: dict[str, KeyValue] = {}
"""KV ``jobs`` by namespace, looked up once (as the gateway does)."""


@contextlib.asynccontextmanager
async def dispatchers(
    url: str, tmp: Path, partitions: int, count: int = 2, prepare: Prepare | None = None, pids: list[int] | None = None
) -> AsyncIterator[tuple[NatsClient, Namespace]]:
    """``count`` dispatcher processes on a fresh namespace with ``partitions`` fold partitions
    (``prepare`` runs on the declared namespace before they start; their pids go to ``pids``)."""
    ns = Namespace("b" + uuid.uuid4().hex[:10])
    nc = await nats.connect(url)
    await apply_declarations(nc.jetstream(), declarations(ns))
    if prepare is not None:
        await prepare(nc, ns)
    table = tmp / "routes.yaml"
    table.write_text(ROUTES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
    env.update(
        GPURELAY_PROFILE="test", GPURELAY_NATS_URL=url, GPURELAY_NAMESPACE=ns.name, GPURELAY_DATA_DIR=str(tmp),
        GPURELAY_ROUTE_TABLE=str(table), GPURELAY_LOCAL_POOL_SIZE="2", GPURELAY_PORT="0",
        GPURELAY_LOG_LEVEL="WARNING", GPURELAY_FOLD_PARTITIONS=str(partitions),
        PYTHONPATH=str(ROOT),
    )  # fmt: skip
    processes = [
        subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
            [sys.executable, "-m", "services.dispatcher"], cwd=ROOT, env=env, stdout=subprocess.PIPE
        )
        for _ in range(count)
    ]
    if pids is not None:
        pids.extend(process.pid for process in processes)
    try:
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 60)
            assert line.strip() == b"dispatcher ready", line
        yield nc, ns
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        await nc.close()


async def create(nc: NatsClient, ns: Namespace, body: dict[str, Any]) -> tuple[str, float]:
    """A job created as the gateway does; its id and when its ``job.created`` was published."""
    js, job_id = nc.jetstream(), new_id("job")
    record = JobRecord.new(job_id, TENANT, parse_job_spec(body), utc_now())
    kv = _JOBS_KV.get(ns.name) or _JOBS_KV.setdefault(ns.name, await js.key_value(ns.bucket(KV_JOBS)))
    await kv.create(tenant_key(TENANT, job_id), record.model_dump_json().encode())
    sent = time.perf_counter()
    await publish_event(js, Subjects(ns).job_event(TENANT, job_id, "created"), job_created_event(record))
    return job_id, sent


async def fold_rate(nc: NatsClient, ns: Namespace, partitions: int, jobs: int, events: int) -> float:
    """Events folded per second while they are published: ``events`` heartbeats over ``jobs`` waiting
    jobs, from the first publish until the fold has consumed everything (bounded by the publisher)."""
    ids = [(await create(nc, ns, WAITING))[0] for _ in range(jobs)]
    await _settle(nc, ns, partitions)
    start = time.perf_counter()
    await publish_heartbeats(nc, ns, ids, events)
    await _settle(nc, ns, partitions)
    return events / (time.perf_counter() - start)


async def drain_rate(url: str, tmp: Path, partitions: int, jobs: int, events: int) -> float:
    """Events folded/s from a backlog: ``jobs`` waiting jobs and ``events`` heartbeats over them are
    stored before 2 dispatcher processes start; the rate at which the backlog falls from 90 % to 10 %
    of it, as the server counts what is left to fold (sampled every 10 ms)."""
    samples: list[tuple[float, int]] = []
    sampler: list[asyncio.Task[None]] = []

    async def prepare(nc: NatsClient, ns: Namespace) -> None:
        await publish_heartbeats(nc, ns, [(await create(nc, ns, WAITING))[0] for _ in range(jobs)], events)
        sampler.append(asyncio.create_task(_sample(nc, ns, partitions, samples)))

    async with dispatchers(url, tmp, partitions, prepare=prepare) as (nc, ns):
        await _settle(nc, ns, partitions)
        await sampler[0]
    total = samples[0][1]
    high = next((t, left) for t, left in samples if left <= 0.9 * total)
    low = next((t, left) for t, left in samples if left <= 0.1 * total)
    return (high[1] - low[1]) / (low[0] - high[0])


async def _sample(nc: NatsClient, ns: Namespace, partitions: int, samples: list[tuple[float, int]]) -> None:
    while not samples or samples[-1][1] > 0:
        samples.append((time.perf_counter(), await fold_pending(nc.jetstream(), ns, partitions)))
        await asyncio.sleep(0.01)


async def publish_heartbeats(nc: NatsClient, ns: Namespace, ids: list[str], events: int) -> None:
    """``events`` heartbeats with increasing times over the jobs ``ids`` (each moves its record)."""
    js, subjects, at = nc.jetstream(), Subjects(ns), datetime.now(UTC)
    for i in range(0, events, 500):
        acks = []
        for n in range(i, min(events, i + 500)):
            job_id = ids[n % len(ids)]
            event = make_event(
                EventType.JOB_HEARTBEAT, JobHeartbeatPayload(), tenant=TENANT, source="bench", job_id=job_id,
                kind="pose", attempt=1, time=at + timedelta(milliseconds=n),
            )  # fmt: skip
            subject = subjects.job_event(TENANT, job_id, "heartbeat")
            acks.append(await js.publish_async(subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.id}))
        await asyncio.gather(*acks)


async def _settle(nc: NatsClient, ns: Namespace, partitions: int, within_s: float = 300.0) -> None:
    async with asyncio.timeout(within_s):
        while not await fold_settled(nc.jetstream(), ns, partitions):  # noqa: ASYNC110 - polling the server
            await asyncio.sleep(0.05)


async def created_to_started(nc: NatsClient, ns: Namespace, per_s: float, jobs: int) -> list[float]:
    """ms from ``job.created`` to ``job.started`` of ``jobs`` jobs offered at ``per_s`` jobs/s."""
    started: dict[str, float] = {}
    done = asyncio.Event()

    async def on_started(msg: Any) -> None:
        started[msg.subject.split(".")[-2]] = time.perf_counter()
        if len(started) >= jobs:
            done.set()

    sub = await nc.subscribe(ns.subject(f"jobs.{TENANT}.*.started"), cb=on_started)
    sent: dict[str, float] = {}
    begin = time.perf_counter()
    for n in range(jobs):
        job_id, at = await create(nc, ns, RUNS)
        sent[job_id] = at
        await asyncio.sleep(max(0.0, begin + (n + 1) / per_s - time.perf_counter()))
    await asyncio.wait_for(done.wait(), 120)
    await sub.unsubscribe()
    return [(started[j] - sent[j]) * 1000 for j in sent]


def cpu_seconds(roots: list[int]) -> float:
    """CPU seconds (user + system) used so far by the processes ``roots`` and their live descendants
    (Linux ``/proc``: a dispatcher's pool processes are its children)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    counted, total = set[int](), 0.0
    frontier = [pid for pid in roots if pid in stats]
    while frontier:
        pid = frontier.pop()
        if pid in counted:
            continue
        counted.add(pid)
        total += stats[pid][1]
        frontier += [child for child, (parent, _) in stats.items() if parent == pid]
    return total
