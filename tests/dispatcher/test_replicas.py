"""Acceptance with dispatcher *processes*: 200 jobs over 2 replicas, and a replica SIGKILLed mid-flight."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.job_parts import JobStatus
from contracts.subjects import Namespace, Subjects
from services.dispatcher.fold.partitions import fold_settled
from services.dispatcher.fold.records import fold, route_pricing
from services.dispatcher.settings import DispatcherSettings
from tests.support.dispatcher import PATIENT_MISSES, POSE, EventLog, read_record, submit
from tests.support.dispatcher_processes import StartReplica


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
    replicas: StartReplica,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
    tmp_path: Path,
) -> None:
    patient = {"GPURELAY_HEARTBEAT_MISSES": str(PATIENT_MISSES)}
    both = [replicas("noop", **patient), replicas("noop", **patient)]
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
    replicas: StartReplica,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
    tmp_path: Path,
) -> None:
    patient = {"GPURELAY_HEARTBEAT_MISSES": str(PATIENT_MISSES)}  # a run twice must be the kill's doing
    first = replicas("sleeps", **patient)
    await first.ready()
    jobs = [await submit(js, jobs_kv, subjects, POSE) for _ in range(12)]
    await event_log.wait(lambda: sum(1 for j in jobs if event_log.ended(j)) >= 2, 30)
    first.kill()
    assert sum(1 for j in jobs if event_log.ended(j)) < len(jobs)  # it died mid-flight
    second = replicas("sleeps", **patient)
    await second.ready()
    await event_log.wait_ended(jobs, 60)
    assert {event_log.ended(j) for j in jobs} == {"job.succeeded"}
    assert runs(tmp_path / "marks") == Counter({j: 1 for j in jobs})
    # An attempt the dead replica dispatched but never handed to a worker is retried (worker_lost),
    # so a job may end on attempt 2, but no workload ever starts twice.
    assert all(event_log.types(j).count("job.started") == 1 for j in jobs)
    await assert_kv_is_the_fold(js, namespace, jobs_kv, event_log, jobs)
