"""Tenant quotas and daily GPU usage on KV (:mod:`contracts.quotas`), read by the gateway at submit and
by the dispatcher's scheduler.

Once started (with a cache, ``ttl_s`` > 0), a :class:`QuotaBook` watches KV ``quotas``: every tenant's
own quota is held in memory (a few per tenant that has one) and a change applies as the watch brings
it, in milliseconds, so a job's admission and its start read nothing (two message gets and their
replies a job before: issue 34). Without the watch (not started, failed, or past
:data:`MAX_VIEWED` tenants) a quota is read and cached ``ttl_s``, as before.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from contracts.quotas import TenantQuota, TenantUsage, subject_usage_key, usage_key
from services.common.nats.kv_watch import KvWatch
from services.common.nats.kv_writes import kv_write

log = logging.getLogger(__name__)
CAS_ATTEMPTS = 50
SNAPSHOT_TIMEOUT_S = 5.0
"""How long :meth:`QuotaBook.start` waits for the tenants' current quotas."""
MAX_VIEWED = 100_000
"""Tenants with an own quota the watched view holds at most; past it the book reads (and caches) again."""
UNREADABLE = None
WRITTEN_MAX = 1024
"""Usage keys whose last write (value and revision) this process keeps, to add to without a read."""
"""The view's mark of a quota whose JSON does not validate: read from KV, which says why."""


class QuotaBook:
    """Quotas (KV ``quotas`` over the deployment's defaults) and usage (KV ``tenant_usage``)."""

    def __init__(self, quotas: KeyValue, usage: KeyValue, defaults: TenantQuota, ttl_s: float = 1.0) -> None:
        self.quotas, self.usage, self.defaults, self.ttl_s = quotas, usage, defaults, ttl_s
        self._cache: dict[str, tuple[float, TenantQuota]] = {}
        self._own: dict[str, TenantQuota | None] = {}
        self._overflow = False
        self._watch = KvWatch(quotas, self._on_entry, name="quota-watcher")
        self.reads = 0
        """Quotas read from KV (no watched view, or a cache miss)."""
        self._written: OrderedDict[str, tuple[TenantUsage, int]] = OrderedDict()

    @property
    def viewing(self) -> bool:
        """Whether quotas come from the watched view (no read)."""
        return self._watch.watching and not self._overflow

    async def start(self) -> None:
        """Watch KV ``quotas`` (with a cache only); without the watch, quotas are read and cached as before."""
        if self.ttl_s <= 0:
            return
        await self._watch.start_or_go_without(SNAPSHOT_TIMEOUT_S, "quotas are read per job")

    async def stop(self) -> None:
        """Stop watching."""
        await self._watch.stop()

    async def caught_up(self, js: JetStreamContext, bucket: str, timeout_s: float = 5.0) -> None:
        """Wait until every quota written to ``bucket`` (the watched one) so far is in the view."""
        await self._watch.caught_up(js, bucket, timeout_s)

    def _on_entry(self, entry: KeyValue.Entry, initial: bool) -> None:
        if self._overflow:
            return
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self._own.pop(entry.key, None)
            return
        try:
            self._own[entry.key] = TenantQuota.model_validate_json(entry.value)
        except ValidationError:
            self._own[entry.key] = UNREADABLE
        if len(self._own) > MAX_VIEWED and not self._overflow:
            log.warning("more than %d tenants have a quota: read per job from now on", MAX_VIEWED)
            self._overflow = True
            self._own.clear()

    async def quota(self, tenant: str) -> TenantQuota:
        """The tenant's quota, defaults filled in."""
        if self.viewing and (own := self._own.get(tenant, TenantQuota())) is not UNREADABLE:
            return own.over(self.defaults)
        cached = self._cache.get(tenant)
        if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        self.reads += 1
        try:
            got = await self.quotas.get(tenant)
            own = TenantQuota.model_validate_json(got.value or b"{}")
        except KeyNotFoundError:
            own = TenantQuota()
        quota = own.over(self.defaults)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[tenant] = (time.monotonic(), quota)
        return quota

    async def set(self, tenant: str, quota: TenantQuota) -> None:
        """Store the tenant's own quota (``None`` fields: the defaults)."""
        await self.quotas.put(tenant, quota.model_dump_json(exclude_none=True).encode())
        self._cache.pop(tenant, None)
        if self.viewing:
            self._own[tenant] = quota  # this process's next check sees it, before its watch brings it

    async def gpu_seconds_today(self, tenant: str) -> float:
        """GPU-seconds the tenant's attempts used this UTC day."""
        return (await self._usage(usage_key(tenant)))[0].gpu_seconds

    async def subject_gpu_seconds_today(self, tenant: str, subject: str) -> float:
        """GPU-seconds the attempts of ``subject``'s jobs used this UTC day."""
        return (await self._usage(subject_usage_key(tenant, subject)))[0].gpu_seconds

    async def add_gpu_seconds(self, tenant: str, seconds: float) -> None:
        """Count ``seconds`` to today's usage (compare-and-set)."""
        await self.add_usage(usage_key(tenant), seconds)

    async def add_usage(self, key: str, seconds: float) -> None:
        """Count ``seconds`` to the usage under ``key`` (:func:`~contracts.quotas.usage_key`: a tenant's
        day), by compare-and-set: on the value this process wrote last (no read: a message get and its
        reply per tally, issue 34), read only when another writer came between."""
        for _ in range(CAS_ATTEMPTS):
            kept: tuple[TenantUsage, int | None] | None = self._written.pop(key, None)
            usage, revision = kept if kept is not None else await self._usage(key)
            added = TenantUsage(gpu_seconds=round(usage.gpu_seconds + max(0.0, seconds), 3))
            if (written := await kv_write(self.usage, key, added.model_dump_json().encode(), revision)) is not None:
                self._written[key] = (added, written)
                while len(self._written) > WRITTEN_MAX:
                    self._written.popitem(last=False)
                return

    async def _usage(self, key: str) -> tuple[TenantUsage, int | None]:
        try:
            got = await self.usage.get(key)
        except KeyNotFoundError:
            return TenantUsage(), None
        return TenantUsage.model_validate_json(got.value or b"{}"), got.revision
