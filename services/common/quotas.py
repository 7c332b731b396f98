"""Tenant quotas and daily GPU usage on KV (:mod:`contracts.quotas`), read by the gateway at submit and
by the dispatcher's scheduler; cached ``ttl_s`` so a change in KV applies within a second, no restart."""

from __future__ import annotations

import time

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.quotas import TenantQuota, TenantUsage, subject_usage_key, usage_key

CAS_ATTEMPTS = 50


class QuotaBook:
    """Quotas (KV ``quotas`` over the deployment's defaults) and usage (KV ``tenant_usage``)."""

    def __init__(self, quotas: KeyValue, usage: KeyValue, defaults: TenantQuota, ttl_s: float = 1.0) -> None:
        self.quotas, self.usage, self.defaults, self.ttl_s = quotas, usage, defaults, ttl_s
        self._cache: dict[str, tuple[float, TenantQuota]] = {}

    async def quota(self, tenant: str) -> TenantQuota:
        """The tenant's quota, defaults filled in."""
        cached = self._cache.get(tenant)
        if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
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
        day), by compare-and-set."""
        for _ in range(CAS_ATTEMPTS):
            usage, revision = await self._usage(key)
            value = TenantUsage(gpu_seconds=round(usage.gpu_seconds + max(0.0, seconds), 3)).model_dump_json().encode()
            try:
                if revision is None:
                    await self.usage.create(key, value)
                else:
                    await self.usage.update(key, value, last=revision)
                return
            except KeyWrongLastSequenceError:
                continue

    async def _usage(self, key: str) -> tuple[TenantUsage, int | None]:
        try:
            got = await self.usage.get(key)
        except KeyNotFoundError:
            return TenantUsage(), None
        return TenantUsage.model_validate_json(got.value or b"{}"), got.revision
