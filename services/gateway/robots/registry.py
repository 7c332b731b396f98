"""At most ``robot_max_per_tenant`` distinct robots per tenant, checked before a robot's samples.

A tenant's robots are the keys ``{tenant}.*`` of KV ``robots``, where each robot's latest sample
stays ``robot_latest_ttl_s`` after it arrived (so a robot that falls silent leaves), together with
the robots this replica admitted lately, whose latest sample may not be in KV yet.

A robot admitted here is remembered for ``robot_admit_cache_s`` (at most ``robot_admit_cache_max``
of them, the oldest forgotten first), so the hot path is one dict lookup. Past that, or for a new
robot, one KV read says whether it is known; only a robot KV does not know costs a listing of the
tenant's keys. A tenant found full stays "full" for :data:`FULL_RECHECK_S`, so that unknown ids at
the cap cost one KV read each. Replicas admitting new robots of one tenant at the same moment may
overshoot the cap by a few: it bounds resources, it is not a billing quota.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.ids import tenant_key, tenant_key_filter
from services.common.nats.kv import kv_entries

FULL_RECHECK_S = 1.0
"""How long a tenant found at its cap is refused new robots without counting again."""


class RobotLimitError(Exception):
    """The tenant has ``limit`` robots already; this one would be one more."""

    def __init__(self, tenant: str, limit: int) -> None:
        super().__init__(
            f"Tenant {tenant!r} already has {limit} robots, the most allowed; a robot that sends nothing "
            "for a while is forgotten and frees its place."
        )
        self.tenant, self.limit = tenant, limit


class RobotRegistry:
    """Admits the robots of each tenant up to ``limit``; one per gateway process."""

    def __init__(
        self,
        kv: KeyValue,
        limit: int,
        cache_max: int,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kv, self.limit, self.cache_max, self.cache_s, self.clock = kv, limit, cache_max, cache_s, clock
        self._admitted: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._by_tenant: dict[str, dict[str, float]] = {}
        self._full_until: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def admit(self, tenant: str, robot_id: str) -> None:
        """Return if ``robot_id`` may publish for ``tenant``; :class:`RobotLimitError` if it would be too many."""
        admitted = self._admitted.get((tenant, robot_id))
        if admitted is not None and self.clock() - admitted < self.cache_s:
            return
        if await self._in_kv(tenant, robot_id):
            self._remember(tenant, robot_id)
            return
        async with self._lock:
            now = self.clock()
            admitted = self._admitted.get((tenant, robot_id))
            if admitted is not None and now - admitted < self.cache_s:
                return
            if self._full_until.get(tenant, 0.0) > now:
                raise RobotLimitError(tenant, self.limit)
            if len(await self._robots_of(tenant, now)) >= self.limit:
                self._mark_full(tenant, now)
                raise RobotLimitError(tenant, self.limit)
            self._remember(tenant, robot_id)

    async def _in_kv(self, tenant: str, robot_id: str) -> bool:
        try:
            entry = await self.kv.get(tenant_key(tenant, robot_id))
        except KeyNotFoundError:
            return False
        return bool(entry.value)

    async def _robots_of(self, tenant: str, now: float) -> set[str]:
        """The tenant's robots: KV's keys and the ones admitted here within ``cache_s``."""
        items = await kv_entries(self.kv, tenant_key_filter(tenant), meta_only=True)
        robots = {item.key.partition(".")[2] for item in items}
        recent = self._by_tenant.get(tenant, {})
        return robots | {robot for robot, at in recent.items() if now - at < self.cache_s}

    def _remember(self, tenant: str, robot_id: str) -> None:
        now = self.clock()
        self._admitted.pop((tenant, robot_id), None)
        self._admitted[(tenant, robot_id)] = now
        self._by_tenant.setdefault(tenant, {})[robot_id] = now
        while len(self._admitted) > self.cache_max:
            (old_tenant, old_robot), _ = self._admitted.popitem(last=False)
            robots = self._by_tenant[old_tenant]
            del robots[old_robot]
            if not robots:
                del self._by_tenant[old_tenant]

    def _mark_full(self, tenant: str, now: float) -> None:
        if len(self._full_until) >= self.cache_max:  # drop expired marks, then the oldest, before adding one
            self._full_until = {t: until for t, until in self._full_until.items() if until > now}
            while len(self._full_until) >= self.cache_max:
                del self._full_until[next(iter(self._full_until))]
        self._full_until[tenant] = now + FULL_RECHECK_S
