"""Quiet partitions: an idle partition gives its pin back and waits in one long pull of one event, so
an idle fold costs NATS almost nothing, yet a job's first event is folded at once, by either replica."""

from __future__ import annotations

import asyncio
import time

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.message_counter import MessageCounter
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.fold.partition import IDLE_PULL_S, QUIET_AFTER_S
from services.dispatcher.fold.partitions import fold_durable
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, fold_pin, local_route, submit

PARTITIONS = 2
REPLICAS = 2


async def test_quiet_partitions_pull_once_in_a_long_while_and_fold_a_new_job_at_once(
    start_dispatcher: StartDispatcher,
    nats_server: EmbeddedNats,
    nc: NatsClient,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
) -> None:
    """Two replicas, two partitions, idle: a pull per partition and replica per :data:`IDLE_PULL_S`
    at most (a busy partition's pulls last a second), no pin held; a job submitted then runs to its
    end in seconds (its partition's waiting pull takes its first event, not the next safety pull)."""
    for _ in range(REPLICAS):
        await start_dispatcher({"pose": local_route("noop")}, fold_partitions=PARTITIONS)
    stream = namespace.stream(JOBS)
    counter = MessageCounter()
    await counter.start(nats_server.url)
    try:
        for _ in range(2):  # twice: whichever replica held a partition last, the quiet ones take it
            await asyncio.sleep(QUIET_AFTER_S + 2.5)  # every partition quiet: pins given back
            for partition in range(PARTITIONS):
                pin = await fold_pin(nc, stream, fold_durable(partition))
                assert pin is None, f"partition {partition} is still pinned: {pin}"
            async with counter.window() as idle:
                await asyncio.sleep(4.0)
            pulls = idle.sources[("pull request", f"$JS.API.CONSUMER.MSG.NEXT.{stream}")]
            assert pulls <= PARTITIONS * REPLICAS * (1 + 4.0 / IDLE_PULL_S), idle.breakdown()
            began = time.monotonic()
            job = await submit(js, jobs_kv, subjects, POSE)
            await event_log.wait_ended([job], within_s=IDLE_PULL_S / 2)
            assert time.monotonic() - began < 5.0, "the job waited for a safety pull"
    finally:
        await counter.stop()
