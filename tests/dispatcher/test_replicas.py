"""Acceptance with dispatcher *processes*: 200 jobs over 2 replicas, and a replica SIGKILLed mid-flight."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.job_record import JobStatus
from contracts.subjects import Namespace, Subjects
from services.dispatcher.fold.partitions import fold_settled
from services.dispatcher.fold.records import fold, route_pricing
from services.dispatcher.settings import DispatcherSettings
from tests.support.dispatcher import POSE, EventLog, W, read_record, submit

ROOT = Path(__file__).resolve().parents[2]
ROUTES = """
profiles:
  dev:
    pose: {{backend: local, function: pose, local: "{w}:{fn}", timeout_s: 30, concurrency: 64,
           price_per_gpu_hour: 1.0, retries: {{max_attempts: 3, backoff_initial_s: 0.05}}}}
"""


class Replica:
    """``python -m services.dispatcher`` in its own process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.dispatcher"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )

    async def ready(self, within_s: float = 60.0) -> None:
        assert self.process.stdout is not None
        async with asyncio.timeout(within_s):
            line = await asyncio.to_thread(self.process.stdout.readline)
        assert line.strip() == b"dispatcher ready", line

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


@pytest.fixture
async def replicas(settings: DispatcherSettings, tmp_path: Path) -> AsyncIterator[Callable[[str], Replica]]:
    """Start dispatcher processes whose pose route runs ``workloads:<fn>``; all stopped at the end."""
    started: list[Replica] = []
    marks = tmp_path / "marks"
    marks.mkdir()

    def start(fn: str) -> Replica:
        table = tmp_path / f"routes-{fn}.yaml"
        table.write_text(ROUTES.format(w=W, fn=fn))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
        env.update(
            GPURELAY_PROFILE="test",
            GPURELAY_NATS_URL=settings.nats_url,
            GPURELAY_NAMESPACE=settings.namespace,
            GPURELAY_DATA_DIR=str(settings.data_dir),
            GPURELAY_ROUTE_TABLE=str(table),
            GPURELAY_HEARTBEAT_INTERVAL_S="0.3",
            GPURELAY_HEARTBEAT_MISSES="5",
            GPURELAY_EVENT_ACK_WAIT_S="1.5",
            GPURELAY_TICKET_ACK_WAIT_S="1.5",
            GPURELAY_LOCAL_POOL_SIZE="2",
            GPURELAY_PORT="0",  # the health endpoint: any free port (two replicas run at once)
            GPURELAY_LOG_LEVEL="WARNING",
            GPURELAY_TEST_MARKS=str(marks),
            PYTHONPATH=str(ROOT),
        )
        replica = Replica(env, tmp_path / "dispatcher.log")
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.stop()


def runs(marks: Path) -> Counter[str]:
    """How many times each job's workload ran (one mark file per run)."""
    return Counter(p.name.split(".")[0] for p in marks.iterdir())


async def settled(js: JetStreamContext, ns: Namespace) -> bool:
    """Whether the fold (partitioned, the replicas' default) has folded everything."""
    return await fold_settled(js, ns, DispatcherSettings.model_fields["fold_partitions"].default)


async def assert_kv_is_the_fold(
    js: JetStreamContext, ns: Namespace, kv: KeyValue, log: EventLog, jobs: list[str]
) -> None:
    async with asyncio.timeout(20):
        while not await settled(js, ns):  # noqa: ASYNC110 - no event says a consumer caught up
            await asyncio.sleep(0.1)
    pricing = route_pricing({"pose": 1.0})
    for job in jobs:
        assert await read_record(kv, job) == fold(log.events[job], pricing)


@pytest.mark.slow
async def test_200_jobs_over_2_replicas_each_run_once_and_kv_is_the_fold(
    replicas: Callable[[str], Replica],
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
    tmp_path: Path,
) -> None:
    both = [replicas("noop"), replicas("noop")]
    await asyncio.gather(*(r.ready() for r in both))
    jobs = await asyncio.gather(*(submit(js, jobs_kv, subjects, POSE) for _ in range(200)))
    await event_log.wait_ended(list(jobs), 60)
    assert {event_log.ended(j) for j in jobs} == {"job.succeeded"}
    assert all(event_log.types(j).count("job.started") == 1 for j in jobs)
    assert runs(tmp_path / "marks") == Counter({j: 1 for j in jobs})
    workers = {event_log.first(j, "job.started").data["worker"] for j in jobs}  # type: ignore[union-attr]
    assert len(workers) > 2  # both replicas' pools took jobs
    await assert_kv_is_the_fold(js, namespace, jobs_kv, event_log, list(jobs))
    statuses = {(await read_record(jobs_kv, j)).status for j in jobs}
    assert statuses == {JobStatus.SUCCEEDED}


@pytest.mark.slow
async def test_a_replica_sigkilled_mid_flight_loses_no_job_and_runs_none_twice(
    replicas: Callable[[str], Replica],
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
    tmp_path: Path,
) -> None:
    first = replicas("sleeps")
    await first.ready()
    jobs = [await submit(js, jobs_kv, subjects, POSE) for _ in range(12)]
    await event_log.wait(lambda: sum(1 for j in jobs if event_log.ended(j)) >= 2, 30)
    first.kill()
    assert sum(1 for j in jobs if event_log.ended(j)) < len(jobs)  # it died mid-flight
    second = replicas("sleeps")
    await second.ready()
    await event_log.wait_ended(jobs, 60)
    assert {event_log.ended(j) for j in jobs} == {"job.succeeded"}
    assert runs(tmp_path / "marks") == Counter({j: 1 for j in jobs})
    # An attempt the dead replica dispatched but never handed to a worker is retried (worker_lost),
    # so a job may end on attempt 2, but no workload ever starts twice.
    assert all(event_log.types(j).count("job.started") == 1 for j in jobs)
    await assert_kv_is_the_fold(js, namespace, jobs_kv, event_log, jobs)
