"""A dispatcher stopped or killed while its partitions are quiet: the server still holds each quiet
partition's 30 s pull of the replica that is gone (a dead connection's requests are not dropped at
once). A job created just after a fresh replica comes up must still be folded at once on every
partition: were the server to pin a partition to the dead request, it would wait for the pin's
timeout (``event_ack_wait_s`` + 2 s, 32 s with production's ack wait)."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.ids import new_id
from contracts.job_parts import TERMINAL
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.dispatcher.fold.handover import pinned_client
from services.dispatcher.fold.partition import IDLE_PULL_S, QUIET_AFTER_S
from services.dispatcher.fold.partitions import fold_durable
from services.dispatcher.settings import DispatcherSettings
from tests.support.dispatcher import POSE, fold_consumer_info, submit, wait_record
from tests.support.dispatcher_processes import Replica, StartReplica

PARTITIONS = DispatcherSettings.model_fields["fold_partitions"].default
ROUNDS = 2
FOLDED_WITHIN_S = 8.0
"""Each job's terminal record, from its creation; a partition pinned to a dead request takes 32 s."""
PRODUCTION_ACK_WAIT = {"GPURELAY_EVENT_ACK_WAIT_S": "30"}
"""The pin's timeout follows the ack wait: production's makes a stall unmistakable (32 s, not 3.5)."""


def partition_of(tenant: str, job_id: str) -> int:
    """The server's ``partition(N,1,2)`` of a job: FNV-1a (32 bit) of its tenant and id, joined."""
    h = 0x811C9DC5
    for byte in (tenant + job_id).encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h % PARTITIONS


def one_job_id_per_partition() -> list[str]:
    """A new job id for each partition, in partition order."""
    ids: dict[int, str] = {}
    while len(ids) < PARTITIONS:
        job_id = new_id("job")
        ids.setdefault(partition_of("acme", job_id), job_id)
    return [ids[p] for p in range(PARTITIONS)]


async def partition_states(nc: NatsClient, ns: Namespace) -> list[dict[str, object]]:
    """Per partition: its pin (if any), requests waiting, and events delivered so far."""
    states = []
    for partition in range(PARTITIONS):
        info = await fold_consumer_info(nc, ns.stream(JOBS), fold_durable(partition))
        delivered = info.get("delivered", {}).get("stream_seq", 0)
        states.append({"pin": pinned_client(info), "waiting": info["num_waiting"], "seq": delivered})
    return states


async def wait_quiet(nc: NatsClient, ns: Namespace) -> list[dict[str, object]]:
    """Until no partition is pinned and each has a request waiting (its quiet 30 s pull)."""
    async with asyncio.timeout(QUIET_AFTER_S + 15):
        while True:
            states = await partition_states(nc, ns)
            if all(not s["pin"] and s["waiting"] for s in states):
                return states
            await asyncio.sleep(0.5)


async def jobs_fold_at_once(
    nc: NatsClient, js: JetStreamContext, kv: KeyValue, subjects: Subjects, ns: Namespace
) -> list[float]:
    """Create a job on each partition; each one's seconds to its terminal record (asserted quick)."""
    before = await partition_states(nc, ns)
    began = time.monotonic()

    async def one(job_id: str) -> float:
        await submit(js, kv, subjects, POSE, job_id=job_id)
        await wait_record(kv, job_id, lambda r: r.status in TERMINAL, within_s=IDLE_PULL_S + 10)
        return time.monotonic() - began

    took = await asyncio.gather(*(one(job_id) for job_id in one_job_id_per_partition()))
    after = await partition_states(nc, ns)
    print(f"folded after {[round(t, 2) for t in took]} s")
    assert all(a["seq"] > b["seq"] for a, b in zip(after, before, strict=True)), "a partition got no job"
    assert max(took) < FOLDED_WITHIN_S, f"a partition stalled: {[round(t, 1) for t in took]} s"
    return list(took)


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["sigkill", "sigterm"])
async def test_a_fresh_replica_folds_at_once_after_a_quiet_one_stopped(
    replicas: StartReplica,
    nc: NatsClient,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    ending: str,
) -> None:
    """One replica at a time, as a single container restarted: it goes quiet (30 s pulls open on
    every partition), is killed or stopped, a fresh one comes up and a job on every partition is
    created at once; each is folded to its end within seconds. Rounds follow each other within the
    dead requests' 30 s, so each round meets those of the rounds before it too."""
    current: Replica = replicas("noop", **PRODUCTION_ACK_WAIT)
    await current.ready()
    for _ in range(ROUNDS):
        await asyncio.sleep(QUIET_AFTER_S + 1.5)  # the jobs' partitions (pinned) go quiet again
        await wait_quiet(nc, namespace)
        current.kill() if ending == "sigkill" else current.stop()
        current = replicas("noop", **PRODUCTION_ACK_WAIT)
        await current.ready()
        await jobs_fold_at_once(nc, js, jobs_kv, subjects, namespace)


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["sigkill", "sigterm"])
async def test_jobs_created_while_no_replica_runs_are_folded_once_one_comes_up(
    replicas: StartReplica,
    nc: NatsClient,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    ending: str,
) -> None:
    """The sharper case: the jobs come while only the killed replica's quiet pulls wait on the server
    (no live one has a request open), so any pin given then could only go to a dead request."""
    current: Replica = replicas("noop", **PRODUCTION_ACK_WAIT)
    await current.ready()
    for _ in range(ROUNDS):
        await asyncio.sleep(QUIET_AFTER_S + 1.5)
        await wait_quiet(nc, namespace)
        current.kill() if ending == "sigkill" else current.stop()
        job_ids = one_job_id_per_partition()
        for job_id in job_ids:
            await submit(js, jobs_kv, subjects, POSE, job_id=job_id)
        await asyncio.sleep(0.5)  # the fold stream has sourced them: the server has offered them
        current = replicas("noop", **PRODUCTION_ACK_WAIT)
        await current.ready()
        began = time.monotonic()
        for job_id in job_ids:
            await wait_record(jobs_kv, job_id, lambda r: r.status in TERMINAL, within_s=IDLE_PULL_S + 10)
        took = time.monotonic() - began
        print(f"all folded {took:.2f} s after the replica was ready")
        assert took < FOLDED_WITHIN_S, f"a partition stalled: {took:.1f} s after the replica was ready"
