"""Ended attempts' GPU-seconds and run times, summed per replica and written together
(:mod:`services.dispatcher.scheduling.tallies`), on real KV buckets: one compare-and-set per tenant-day and per
kind per flush whatever the number of attempts, nothing lost when a write fails, and a dispatcher
that stops writes what it has."""

from __future__ import annotations

import time

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts import streams
from contracts.quotas import TenantQuota, TenantUsage, usage_key
from contracts.streams import Declarations
from contracts.subjects import Namespace, Subjects
from services.common.quotas import QuotaBook
from services.dispatcher.scheduling.queue_entries import QueueEntry
from services.dispatcher.scheduling.run_times import RunTimes, RunTimesDoc, size_class
from services.dispatcher.scheduling.tallies import Tallies
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, submit
from tests.support.scheduling import InstantBackend

WINDOW = 5


def _entry(tenant: str, input_bytes: int | None = None) -> QueueEntry:
    now = time.time()
    return QueueEntry(tenant=tenant, job_id="job_x", kind="pose", attempt=1, enqueued_at=now, input_bytes=input_bytes)


@pytest.fixture
async def buckets(js: JetStreamContext, declared: Declarations, namespace: Namespace) -> tuple[KeyValue, KeyValue]:
    """KV ``tenant_usage`` and ``dispatch_runtimes`` of this test."""
    usage = await js.key_value(namespace.bucket(streams.KV_TENANT_USAGE))
    return usage, await js.key_value(namespace.bucket(streams.KV_DISPATCH_RUNTIMES))


async def _book(js: JetStreamContext, namespace: Namespace, usage: KeyValue) -> QuotaBook:
    return QuotaBook(await js.key_value(namespace.bucket(streams.KV_QUOTAS)), usage, TenantQuota())


async def _tallies(js: JetStreamContext, namespace: Namespace, buckets: tuple[KeyValue, KeyValue]) -> Tallies:
    return Tallies(await _book(js, namespace, buckets[0]), RunTimes(buckets[1], WINDOW))


async def test_a_flush_writes_each_tenant_day_and_each_kind_once_with_every_attempt_in_it(
    js: JetStreamContext, namespace: Namespace, buckets: tuple[KeyValue, KeyValue]
) -> None:
    usage, runtimes = buckets
    tallies = await _tallies(js, namespace, buckets)
    for n in range(40):
        tallies.add(_entry("acme" if n % 4 else "beta", input_bytes=4**3), 0.25, succeeded=n % 2 == 0)
    assert tallies.pending == 3  # two tenant-days and one kind
    await tallies.flush()
    assert tallies.pending == 0

    acme, beta = await usage.get(usage_key("acme")), await usage.get(usage_key("beta"))
    assert TenantUsage.model_validate_json(acme.value or b"").gpu_seconds == 30 * 0.25
    assert TenantUsage.model_validate_json(beta.value or b"").gpu_seconds == 10 * 0.25
    doc = await runtimes.get("pose")
    by_size = RunTimesDoc.model_validate_json(doc.value or b"").by_size
    assert by_size == {size_class(4**3): [0.25] * WINDOW, "all": [0.25] * WINDOW}  # 20 successes, the last WINDOW kept
    usage_writes = (await js.stream_info(f"KV_{namespace.bucket(streams.KV_TENANT_USAGE)}")).state.last_seq
    runtime_writes = (await js.stream_info(f"KV_{namespace.bucket(streams.KV_DISPATCH_RUNTIMES)}")).state.last_seq
    assert (usage_writes, runtime_writes) == (2, 1), "one compare-and-set per tenant-day and per kind"

    tallies.add(_entry("acme"), 1.0, succeeded=False)
    await tallies.flush()
    acme = await usage.get(usage_key("acme"))
    assert TenantUsage.model_validate_json(acme.value or b"").gpu_seconds == 30 * 0.25 + 1.0
    await tallies.flush()  # nothing left: no write
    assert (await usage.get(usage_key("acme"))).revision == acme.revision


async def test_what_a_failed_write_held_is_written_by_the_next_flush(
    js: JetStreamContext, namespace: Namespace, buckets: tuple[KeyValue, KeyValue], declared: Declarations
) -> None:
    tallies = await _tallies(js, namespace, buckets)
    bucket = namespace.bucket(streams.KV_TENANT_USAGE)
    await js.delete_key_value(bucket)  # every write to it fails now
    tallies.add(_entry("acme"), 2.0, succeeded=True)
    await tallies.flush()
    assert tallies.pending == 1, "the usage it could not write is kept"

    usage = await js.create_key_value(bucket=bucket)
    tallies.quotas.usage = usage
    await tallies.flush()
    assert tallies.pending == 0
    assert TenantUsage.model_validate_json((await usage.get(usage_key("acme"))).value or b"").gpu_seconds == 2.0


async def test_a_dispatcher_that_stops_writes_its_tallies(
    start_dispatcher: StartDispatcher,
    instant: InstantBackend,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
    namespace: Namespace,
    buckets: tuple[KeyValue, KeyValue],
) -> None:
    instant.run_s = 0.2
    instant.gate.set()
    route = local_route("noop", concurrency=4)
    dispatcher = await start_dispatcher({"pose": route}, backends={"local": instant}, tally_flush_interval_s=60.0)
    jobs = [await submit(js, jobs_kv, subjects, POSE, tenant="stopping") for _ in range(3)]
    await event_log.wait_ended(jobs, 30)
    attempts = dispatcher.attempts
    assert attempts is not None  # each attempt ends (and is tallied) just after its terminal event
    await wait_for(lambda: not attempts.held, 10, "every attempt tallied")
    book = await _book(js, namespace, buckets[0])
    assert await book.gpu_seconds_today("stopping") == 0.0, "nothing written before the interval"
    await dispatcher.stop()
    assert await book.gpu_seconds_today("stopping") >= 3 * 0.2
