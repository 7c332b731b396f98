"""Each tenant's browser origins (KV ``tenant_cors``), mirrored in memory by a KV watch.

Key = the tenant, value ``{"origins": [...]}`` (:class:`TenantOrigins` writes it; ``gpurelay cors set``
and ``PUT /v1/cors`` call it). A change reaches every gateway and notifier replica through the watch,
in milliseconds. Until the watch has read the bucket, no tenant origin is allowed (the global list
still is).
"""

from __future__ import annotations

import json
import logging

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from services.common.nats.kv_watch import KvWatch

log = logging.getLogger(__name__)
SNAPSHOT_TIMEOUT_S = 5.0


def parse_origins(value: bytes | None) -> frozenset[str]:
    """The origins a KV value lists (nothing for a value that is not one)."""
    try:
        origins = json.loads(value or b"{}").get("origins", [])
    except (ValueError, AttributeError):
        return frozenset()
    return frozenset(o for o in origins if isinstance(o, str)) if isinstance(origins, list) else frozenset()


class TenantOrigins:
    """Tenant → its allowed origins, and the union of all of them (for requests that name no tenant)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._by_tenant: dict[str, frozenset[str]] = {}
        self._any: frozenset[str] = frozenset()
        self._watch = KvWatch(kv, self._on_entry, name="tenant-cors-watcher")

    async def start(self) -> None:
        """Watch the bucket and wait for its current entries (a failure leaves tenant origins off)."""
        try:
            await self._watch.start(SNAPSHOT_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - CORS for tenants is off until KV answers; the global list holds
            log.warning("tenant CORS origins are not watched: %r", exc)

    async def stop(self) -> None:
        """Stop watching."""
        await self._watch.stop()

    def of(self, tenant: str | None) -> frozenset[str]:
        """The origins ``tenant`` allows; for ``None`` (no tenant named), every tenant's."""
        return self._any if tenant is None else self._by_tenant.get(tenant, frozenset())

    async def get(self, tenant: str) -> list[str]:
        """``tenant``'s origins as stored (read from KV, not the mirror)."""
        try:
            entry = await self.kv.get(tenant)
        except KeyNotFoundError:
            return []
        return sorted(parse_origins(entry.value))

    async def put(self, tenant: str, origins: list[str]) -> None:
        """Store ``tenant``'s origins (an empty list deletes the entry)."""
        if origins:
            await self.kv.put(tenant, json.dumps({"origins": sorted(set(origins))}).encode())
        else:
            await self.kv.delete(tenant)

    def _on_entry(self, entry: KeyValue.Entry, initial: bool) -> None:
        origins = parse_origins(entry.value) if entry.operation is None else frozenset()
        if origins:
            self._by_tenant[entry.key] = origins
        else:
            self._by_tenant.pop(entry.key, None)
        self._any = frozenset().union(*self._by_tenant.values())
