"""Admission at submit: a tenant's quotas (:mod:`contracts.quotas`) answered before a job is recorded.

* ``max_queued``: the tenant's attempts waiting for a slot (unclaimed entries of KV
  ``dispatch_queue``, any kind) at the limit → 429 ``quota_max_queued`` with ``Retry-After`` (about
  one run of the kind, from its observed run times, at least 1 s).
* ``gpu_seconds_per_day``: today's GPU-seconds (KV ``tenant_usage``) plus this job's estimate (the
  kind's median run time) over the limit → 429 ``quota_gpu_seconds`` with ``Retry-After`` = the
  seconds to the next UTC day.
* ``subject_max_queued`` and ``subject_gpu_seconds_per_day``: the same for one end user (the
  ``subject`` of the scoped token submitting): 429 ``quota_subject_max_queued`` /
  ``quota_subject_gpu_seconds``. (``subject_max_running_per_kind`` is the dispatcher's, as
  ``max_running_per_kind`` is.)

Both are read per request (quotas through a 1 s cache), so a change in KV ``quotas`` applies at
once; the kind's run times (KV ``dispatch_runtimes``) only when a quota needs them (a GPU-seconds
quota, or a full queue's ``Retry-After``), so a tenant with neither costs no read per submit. The
queue count trails submissions by the dispatcher's fold (a job counts once it is queued), so a burst
can pass ``max_queued`` by what the fold has not reached yet.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts import streams
from contracts.quotas import TenantQuota, seconds_to_midnight
from contracts.specs.jobs import JobSpec
from contracts.subjects import Namespace
from services.common.http.problem import ProblemError
from services.common.nats.kv import bind_bucket, kv_entries
from services.common.quotas import QuotaBook

DEFAULT_RETRY_AFTER_S = 30


@dataclass(frozen=True)
class Admission:
    """The KV the checks read."""

    book: QuotaBook
    queue: KeyValue
    runtimes: KeyValue

    @classmethod
    async def open(cls, js: JetStreamContext, ns: Namespace, defaults: TenantQuota, cache_s: float) -> Admission:
        """Bind the buckets (declared by ``declare_all``)."""
        book = QuotaBook(
            await bind_bucket(js, ns.bucket(streams.KV_QUOTAS)),
            await bind_bucket(js, ns.bucket(streams.KV_TENANT_USAGE)),
            defaults,
            cache_s,
        )
        queue = await bind_bucket(js, ns.bucket(streams.KV_DISPATCH_QUEUE))
        return cls(book, queue, await bind_bucket(js, ns.bucket(streams.KV_DISPATCH_RUNTIMES)))

    async def check(self, tenant: str, spec: JobSpec, subject: str | None = None) -> None:
        """429 (problem+json, ``Retry-After``) when ``spec`` would pass one of the tenant's quotas, or (for
        a job of end user ``subject``) one of the per-subject quotas. The kind's run times are read only
        when a quota needs them: a GPU-seconds quota (this job's estimate), or a queue at its limit (the
        ``Retry-After``); a tenant without those costs no read (issue 34)."""
        quota = await self.book.quota(tenant)
        median = _Median(self, str(spec.kind))
        if quota.max_queued is not None:
            waiting = await self.waiting(tenant)
            if waiting >= quota.max_queued:
                what = f"{waiting} of this tenant's jobs are queued, its limit is {quota.max_queued}"
                raise _too_many_queued(what, await median.retry_after())
        if quota.gpu_seconds_per_day is not None:
            used, estimate = await self.book.gpu_seconds_today(tenant), await median.estimate()
            if used + estimate > quota.gpu_seconds_per_day:
                raise _over_gpu_seconds(f"this tenant used {used:.0f} of its {quota.gpu_seconds_per_day:g}", estimate)
        if subject is None:
            return
        if quota.subject_max_queued is not None:
            waiting = await self.waiting(tenant, subject)
            if waiting >= quota.subject_max_queued:
                what = f"{waiting} of this end user's jobs are queued, the limit is {quota.subject_max_queued} each"
                raise _too_many_queued(what, await median.retry_after(), "quota_subject_max_queued")
        if quota.subject_gpu_seconds_per_day is not None:
            used, estimate = await self.book.subject_gpu_seconds_today(tenant, subject), await median.estimate()
            if used + estimate > quota.subject_gpu_seconds_per_day:
                what = f"this end user used {used:.0f} of their {quota.subject_gpu_seconds_per_day:g}"
                raise _over_gpu_seconds(what, estimate, "quota_subject_gpu_seconds")

    async def waiting(self, tenant: str, subject: str | None = None) -> int:
        """The tenant's attempts waiting for a slot, every kind (of ``subject``'s jobs only, when given)."""
        entries = await kv_entries(self.queue, f"*.{tenant}.>")
        waiting = [json.loads(item.value) for item in entries]
        return sum(
            1 for e in waiting if e.get("claimed_by") is None and (subject is None or e.get("subject") == subject)
        )

    async def median_run_s(self, kind: str) -> float | None:
        """The kind's median observed run time (all input sizes), ``None`` before any."""
        try:
            got = await self.runtimes.get(str(kind))
        except KeyNotFoundError:
            return None
        runs = json.loads(got.value or b"{}").get("by_size", {}).get("all", [])
        return float(statistics.median(runs)) if runs else None


class _Median:
    """The kind's median run time for one admission, read at most once and only when asked."""

    def __init__(self, admission: Admission, kind: str) -> None:
        self._admission, self._kind = admission, kind
        self._read = False
        self._value: float | None = None

    async def value(self) -> float | None:
        """The median (``None`` before any run of the kind)."""
        if not self._read:
            self._value, self._read = await self._admission.median_run_s(self._kind), True
        return self._value

    async def estimate(self) -> float:
        """This job's GPU-seconds estimate (0 before any run of its kind)."""
        return await self.value() or 0.0

    async def retry_after(self) -> int:
        """A full queue's ``Retry-After``: about one run of the kind, at least 1 s."""
        median = await self.value()
        return max(1, math.ceil(median)) if median is not None else DEFAULT_RETRY_AFTER_S


def _too_many_queued(what: str, retry_after_s: int, code: str = "quota_max_queued") -> ProblemError:
    return ProblemError(
        429, f"{what}; retry later.", title="Too many queued jobs", headers={"Retry-After": str(retry_after_s)},
        code=code,
    )  # fmt: skip


def _over_gpu_seconds(used: str, estimate: float, code: str = "quota_gpu_seconds") -> ProblemError:
    return ProblemError(
        429, f"{used} GPU-seconds today and this job needs about {estimate:.0f} more.",
        title="GPU-seconds quota exceeded", headers={"Retry-After": str(seconds_to_midnight())}, code=code,
    )  # fmt: skip
