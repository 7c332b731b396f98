"""A cache of verified API keys, kept true by watching KV ``apikeys``.

Verifying a key is a KV read, about half the CPU of a single-sample joint-angle POST. The cache
keeps the principal of each key verified in the last ``ttl_s`` seconds, by the key's SHA-256 (no
plaintext key is kept), and drops it as soon as the key's KV entry changes: a revocation (a put
with ``revoked_at``) or a deletion reaches every replica through one watcher in milliseconds. The
TTL only bounds how long a missed change could last. Should the watcher fail to start or stop,
nothing more is cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time

from nats.js.kv import KeyValue

from services.common.apikeys import ApiKeyStore, Principal

log = logging.getLogger(__name__)
MAX_ENTRIES = 10_000
"""Past this many cached keys (or remembered changes) the cache starts afresh."""
SNAPSHOT_TIMEOUT_S = 5.0
"""How long :meth:`KeyCache.start` waits for the watcher to read the bucket's current keys."""


class KeyCache:
    """Principals of recently verified API keys, invalidated by changes to their KV entries."""

    def __init__(self, store: ApiKeyStore, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._entries: dict[bytes, tuple[Principal, float]] = {}
        self._changed: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._watching = False
        self._snapshot_done = asyncio.Event()

    @property
    def active(self) -> bool:
        """Whether keys are being cached: a TTL, and a watcher past the bucket's initial snapshot."""
        return self.ttl_s > 0 and self._watching and self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Watch KV ``apikeys`` and wait for its current keys; without a watcher nothing is cached."""
        if self.ttl_s <= 0:
            return
        try:
            watcher = await self.store.kv.watchall(meta_only=True)
        except Exception as exc:  # noqa: BLE001 - caching is an optimisation: go on without it
            log.warning("API keys are not cached: cannot watch KV apikeys (%r)", exc)
            return
        self._task = asyncio.create_task(self._watch(watcher), name="apikey-cache-watcher")
        try:
            await asyncio.wait_for(self._snapshot_done.wait(), SNAPSHOT_TIMEOUT_S)
        except TimeoutError:
            log.warning("KV apikeys still loading after %ss; caching starts later", SNAPSHOT_TIMEOUT_S)

    async def stop(self) -> None:
        """Stop watching and forget every key."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._entries.clear()

    async def verify(self, key: str) -> Principal | None:
        """The principal of ``key``, cached or from :meth:`ApiKeyStore.verify`; ``None`` if invalid."""
        digest = hashlib.sha256(key.encode()).digest()
        started = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[1] > started and self.active:
            return hit[0]
        principal = await self.store.verify(key)
        if principal is not None and self.active and self._changed.get(principal.key_id, -1.0) < started:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (principal, started + self.ttl_s)
        return principal

    def invalidate(self, key_id: str) -> None:
        """Forget every cached key of ``key_id`` and any verification of it already under way."""
        if len(self._changed) >= MAX_ENTRIES:
            self._changed.clear()
        self._changed[key_id] = time.monotonic()
        for digest in [d for d, (p, _) in self._entries.items() if p.key_id == key_id]:
            del self._entries[digest]

    async def _watch(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for entry in watcher:
                if entry is None:  # the end of the initial snapshot: from here on, entries are changes
                    self._watching = True
                    self._snapshot_done.set()
                elif self._watching:
                    self.invalidate(entry.key)
        finally:
            self._watching = False
            self._entries.clear()
