"""Quotas in the scheduler: running jobs per kind per tenant (KV, changed without a restart) and
concurrency keys; the GPU-seconds each attempt used are counted to its tenant's day."""

from __future__ import annotations

from datetime import datetime

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.quotas import TenantQuota
from contracts.subjects import Namespace, Subjects
from services.common.quotas import QuotaBook
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, submit
from tests.support.scheduling import InstantBackend, quota_book


def most_at_once(log: EventLog, jobs: list[str]) -> int:
    """The most of ``jobs`` that ran at the same time (dispatched → succeeded)."""
    spans: list[tuple[datetime, datetime]] = []
    for job in jobs:
        began, ended = log.first(job, "job.dispatched"), log.first(job, "job.succeeded")
        assert began is not None
        assert ended is not None
        spans.append((began.time, ended.time))
    return max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)


async def test_running_caps_per_tenant_from_kv_and_per_concurrency_key_hold(
    start_dispatcher: StartDispatcher,
    instant: InstantBackend,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
) -> None:
    instant.run_s = 0.2
    instant.gate.set()
    await start_dispatcher({"pose": local_route("noop", concurrency=6)}, backends={"local": instant})
    book = await quota_book(js, namespace)
    await book.set("capped", TenantQuota(max_running_per_kind=1))  # after the dispatcher started
    capped = [await submit(js, jobs_kv, subjects, POSE, tenant="capped") for _ in range(4)]
    user1 = [await submit(js, jobs_kv, subjects, POSE | {"concurrency_key": "u1"}) for _ in range(4)]
    free = [await submit(js, jobs_kv, subjects, POSE, tenant="free") for _ in range(4)]
    await event_log.wait_ended(capped + user1 + free, 30)
    assert most_at_once(event_log, capped) == 1
    assert most_at_once(event_log, user1) == 1  # concurrency_key_limit defaults to 1
    assert most_at_once(event_log, free) > 1
    # written by the replica's next tally flush (every second)
    await wait_for(lambda: _at_least(book, "capped", 4 * 0.2), 10, "the capped tenant's GPU-seconds written")


async def _at_least(book: QuotaBook, tenant: str, seconds: float) -> bool:
    return await book.gpu_seconds_today(tenant) >= seconds
