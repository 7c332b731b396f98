"""A cache of verified API keys, kept true by watching KV ``apikeys`` (gateway and notifier).

Verifying a key is a KV read, about half the CPU of a single-sample joint-angle POST. The cache
keeps the principal of each key verified in the last ``ttl_s`` seconds, by the key's SHA-256 (no
plaintext key is kept), and drops it as soon as the key's KV entry changes: a revocation (a put
with ``revoked_at``) or a deletion reaches every replica through one watcher (:class:`KvWatch`) in
milliseconds. The TTL only bounds how long a missed change could last; ``max_entries`` bounds its
memory. Should the watcher fail to start or stop, nothing more is cached.

With a ``token_secret`` it also takes the dashboard's short-lived tenant tokens
(:func:`dashboard_token`, audience ``dashboard``): a token names the API key it was minted for, and
holds only while that key is unrevoked; tokens are never cached (their key's KV entry is read each
time), so a revocation ends them at once.
"""

from __future__ import annotations

import hashlib
import logging
import time

from nats.js.kv import KeyValue

from services.common.auth.apikeys import ApiKeyStore, Principal
from services.common.auth.tokens import TokenError, mint_token, verify_token
from services.common.nats.kv_watch import KvWatch

log = logging.getLogger(__name__)
SNAPSHOT_TIMEOUT_S = 5.0
"""How long :meth:`KeyCache.start` waits for the watcher to read the bucket's current keys."""


class KeyCache:
    """Principals of recently verified API keys, invalidated by changes to their KV entries."""

    def __init__(
        self, store: ApiKeyStore, ttl_s: float, max_entries: int = 10_000, *, token_secret: bytes | None = None
    ) -> None:
        self.store = store
        self.token_secret = token_secret
        """The secret dashboard tokens are signed with; ``None``: API keys only."""
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        """Past this many cached keys (or remembered changes) the cache starts afresh."""
        self.kv_reads = 0
        """Verifications that read KV (a cache miss), for tests and operators."""
        self._entries: dict[bytes, tuple[Principal, float]] = {}
        self._changed: dict[str, float] = {}
        self._watch = KvWatch(store.kv, self._on_entry, meta_only=True, name="apikey-cache-watcher")

    @property
    def active(self) -> bool:
        """Whether keys are being cached: a TTL, and a watcher past the bucket's initial snapshot."""
        return self.ttl_s > 0 and self._watch.watching

    async def start(self) -> None:
        """Watch KV ``apikeys`` and wait for its current keys; without a watcher nothing is cached."""
        if self.ttl_s <= 0:
            return
        try:
            await self._watch.start(SNAPSHOT_TIMEOUT_S)
        except TimeoutError:
            log.warning("KV apikeys still loading after %ss; caching starts later", SNAPSHOT_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - caching is an optimisation: go on without it
            log.warning("API keys are not cached: cannot watch KV apikeys (%r)", exc)

    async def stop(self) -> None:
        """Stop watching and forget every key."""
        await self._watch.stop()
        self._entries.clear()

    async def verify(self, key: str) -> Principal | None:
        """The principal of ``key``, cached or from :meth:`ApiKeyStore.verify`; ``None`` if invalid."""
        if self.token_secret is not None and key.startswith("v1."):
            return await self._token_principal(self.token_secret, key)
        digest = hashlib.sha256(key.encode()).digest()
        started = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[1] > started and self.active:
            return hit[0]
        self.kv_reads += 1
        principal = await self.store.verify(key)
        if principal is not None and self.active and self._changed.get(principal.key_id, -1.0) < started:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[digest] = (principal, started + self.ttl_s)
        return principal

    async def _token_principal(self, secret: bytes, token: str) -> Principal | None:
        """The principal of a valid dashboard token whose API key is still unrevoked, of its tenant."""
        try:
            claims = verify_token(secret, token, "dashboard")
        except TokenError:
            return None
        key_id, tenant = claims.get("key_id"), claims.get("tenant")
        if not isinstance(key_id, str) or not isinstance(tenant, str):
            return None
        self.kv_reads += 1
        record = await self.store.get(key_id)
        if record is None or record.revoked_at is not None or record.tenant != tenant:
            return None
        return Principal(tenant=tenant, key_id=key_id)

    def invalidate(self, key_id: str) -> None:
        """Forget every cached key of ``key_id`` and any verification of it already under way."""
        if len(self._changed) >= self.max_entries:
            self._changed.clear()
        self._changed[key_id] = time.monotonic()
        for digest in [d for d, (p, _) in self._entries.items() if p.key_id == key_id]:
            del self._entries[digest]

    def _on_entry(self, entry: KeyValue.Entry, initial: bool) -> None:
        if not initial:  # the snapshot only says which keys exist: changes come after it
            self.invalidate(entry.key)


def dashboard_token(secret: bytes, principal: Principal, ttl_s: float) -> str:
    """A short-lived bearer token for ``principal``'s tenant, accepted by a :class:`KeyCache` with ``secret``."""
    return mint_token(secret, "dashboard", ttl_s, tenant=principal.tenant, key_id=principal.key_id)
