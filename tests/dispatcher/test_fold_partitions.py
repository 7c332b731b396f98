"""The partitioned fold: partitions fold in parallel over 2 dispatchers and KV still equals fold(stream)."""

from __future__ import annotations

import asyncio
import random

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.events import EventType
from contracts.job_events import JobProgressPayload
from contracts.subjects import Namespace, Subjects
from services.dispatcher.fold import fold, route_pricing
from services.dispatcher.partitions import FOLD_STREAM, fold_durable, fold_settled
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, read_record, request_cancel, submit
from tests.support.events import job_event, publish, wait_for

PARTITIONS = 4


async def test_random_interleavings_fold_in_parallel_and_kv_is_the_fold(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
) -> None:
    routes = {"pose": local_route("noop", concurrency=16)}
    for _ in range(2):  # two replicas share every partition's consumer
        await start_dispatcher(routes, fold_partitions=PARTITIONS)
    rng = random.Random(18)
    jobs = list(await asyncio.gather(*(submit(js, jobs_kv, subjects, POSE) for _ in range(40))))

    async def noise(job: str) -> None:
        """Events racing the job's own: progress, logs, now and then a cancel."""
        for _ in range(rng.randint(2, 8)):
            kind = rng.choice([EventType.JOB_PROGRESS, EventType.JOB_LOG])
            payload = JobProgressPayload(fraction=rng.random()) if kind == EventType.JOB_PROGRESS else None
            await publish(js, subjects, job_event("acme", job, kind, payload))
            await asyncio.sleep(rng.random() * 0.01)
        if rng.random() < 0.2:
            await request_cancel(js, subjects, job)

    await asyncio.gather(*(noise(job) for job in jobs))
    await event_log.wait_ended(jobs, 60)
    await wait_for(lambda: fold_settled(js, namespace, PARTITIONS), timeout_s=30, what="the fold settled")
    pricing = route_pricing({"pose": 3.6})
    for job in jobs:
        assert await read_record(jobs_kv, job) == fold(event_log.events[job], pricing)
    stream = namespace.stream(FOLD_STREAM)
    folded = [(await js.consumer_info(stream, fold_durable(p))).delivered.stream_seq for p in range(PARTITIONS)]
    assert sum(1 for seq in folded if seq) >= 2  # the jobs spread over the partitions
