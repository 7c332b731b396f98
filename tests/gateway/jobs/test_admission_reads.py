"""What admission reads at submit: the kind's run times (KV ``dispatch_runtimes``) only when a quota needs
them (a GPU-seconds quota's estimate, a full queue's ``Retry-After``), once per check at most; a tenant
without such a quota costs no read (issue 34: a message get and its reply per job)."""

from __future__ import annotations

import json

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.quotas import TenantQuota
from contracts.specs.jobs import JobSpecAdapter
from contracts.streams import Declarations
from contracts.subjects import Namespace
from services.common.http.problem import ProblemError
from services.gateway.jobs.admission import Admission
from tests.support.dispatcher import POSE

SPEC = JobSpecAdapter.validate_python(POSE)


class CountingKv:
    """A bucket whose gets are counted."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv, self.gets = kv, 0

    async def get(self, key: str) -> KeyValue.Entry:
        self.gets += 1
        return await self.kv.get(key)


@pytest.fixture
async def admission(js: JetStreamContext, namespace: Namespace, declared: Declarations) -> tuple[Admission, CountingKv]:
    """Admission over this test's buckets (defaults: no quota), its run times counted; pose runs ~4 s."""
    opened = await Admission.open(js, namespace, TenantQuota(), cache_s=0.0)
    runtimes = CountingKv(opened.runtimes)
    await opened.runtimes.put("pose", json.dumps({"by_size": {"all": [3.2, 4.0, 5.0]}}).encode())
    return Admission(opened.book, opened.queue, runtimes), runtimes  # type: ignore[arg-type]


async def test_a_tenant_without_a_quota_that_needs_run_times_costs_no_read(
    admission: tuple[Admission, CountingKv],
) -> None:
    check, runtimes = admission
    await check.check("acme", SPEC, subject="end-user")
    await check.book.set("acme", TenantQuota(max_queued=5, subject_max_queued=5))
    await check.check("acme", SPEC, subject="end-user")  # queues below their limits: no Retry-After needed
    assert runtimes.gets == 0


async def test_a_full_queue_reads_them_for_its_retry_after(admission: tuple[Admission, CountingKv]) -> None:
    check, runtimes = admission
    await check.book.set("acme", TenantQuota(max_queued=0))
    with pytest.raises(ProblemError) as refused:
        await check.check("acme", SPEC)
    assert refused.value.headers == {"Retry-After": "4"}  # about one run of the kind
    assert runtimes.gets == 1


async def test_gpu_seconds_quotas_read_them_once_for_the_estimate(admission: tuple[Admission, CountingKv]) -> None:
    check, runtimes = admission
    await check.book.set("acme", TenantQuota(gpu_seconds_per_day=100.0, subject_gpu_seconds_per_day=100.0))
    await check.check("acme", SPEC, subject="end-user")
    assert runtimes.gets == 1
    await check.book.add_gpu_seconds("acme", 97.0)
    with pytest.raises(ProblemError) as refused:
        await check.check("acme", SPEC)  # 97 used + 4 estimated > 100
    assert refused.value.extra["code"] == "quota_gpu_seconds"
    assert runtimes.gets == 2
