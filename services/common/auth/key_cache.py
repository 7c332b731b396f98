"""A cache of verified API keys, kept true by watching KV ``apikeys`` (gateway and notifier).

Verifying a key is a KV read, about half the CPU of a single-sample joint-angle POST. The cache
keeps the principal of each key verified in the last ``ttl_s`` seconds, by the key's SHA-256 (no
plaintext key is kept), and drops it as soon as the key's KV entry changes: a revocation (a put
with ``revoked_at``) or a deletion reaches every replica through one watcher (:class:`KvWatch`) in
milliseconds. The TTL only bounds how long a missed change could last; ``max_entries`` bounds its
memory. Should the watcher fail to start or stop, nothing more is cached.

With a ``token_secret`` it also takes scoped API tokens (:mod:`services.common.auth.scoped`: minted
with ``POST /v1/tokens``, a dashboard page's, a job's stream token). A token names the API key it
was minted with and holds only while that key is unrevoked: the key's record is cached by its id
under the same watch, so a revocation refuses its tokens as fast as the key itself.
:meth:`KeyCache.authenticate` says why a credential is refused (invalid, expired, revoked).
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Literal

from nats.js.kv import KeyValue

from services.common.auth.apikeys import ApiKeyRecord, ApiKeyStore, Principal
from services.common.auth.scoped import principal_of
from services.common.auth.tokens import TokenExpiredError, TokenInvalidError, looks_like_token, verify_token
from services.common.nats.kv_watch import KvWatch

log = logging.getLogger(__name__)
SNAPSHOT_TIMEOUT_S = 5.0
"""How long :meth:`KeyCache.start` waits for the watcher to read the bucket's current keys."""
Refusal = Literal["key", "token", "expired", "revoked"]
REFUSALS: dict[Refusal, str] = {
    "key": "The API key is invalid or revoked.",
    "token": "The token is malformed or its signature is not valid.",
    "expired": "The token has expired; mint a fresh one.",
    "revoked": "The token's API key was revoked: its tokens are refused.",
}


class CredentialRefusedError(Exception):
    """A credential that does not authenticate; ``reason`` says why (the 401's detail)."""

    def __init__(self, reason: Refusal) -> None:
        super().__init__(REFUSALS[reason])
        self.reason: Refusal = reason


class KeyCache:
    """Principals of recently verified API keys, invalidated by changes to their KV entries."""

    def __init__(
        self, store: ApiKeyStore, ttl_s: float, max_entries: int = 10_000, *, token_secret: bytes | None = None
    ) -> None:
        self.store = store
        self.token_secret = token_secret
        """The secret scoped tokens are signed with; ``None``: API keys only."""
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        """Past this many cached keys (or remembered changes) the cache starts afresh."""
        self.kv_reads = 0
        """Verifications that read KV (a cache miss), for tests and operators."""
        self._entries: dict[bytes, tuple[Principal, float]] = {}
        self._records: dict[str, tuple[ApiKeyRecord | None, float]] = {}
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
        self._records.clear()

    async def verify(self, key: str) -> Principal | None:
        """The principal of ``key`` (an API key or a scoped token); ``None`` if it is refused."""
        try:
            return await self.authenticate(key)
        except CredentialRefusedError:
            return None

    async def authenticate(self, credential: str) -> Principal:
        """The principal of an API key (cached, or from :meth:`ApiKeyStore.verify`) or of a scoped token
        whose key is unrevoked; :class:`CredentialRefusedError` saying why otherwise."""
        if self.token_secret is not None and looks_like_token(credential):
            return await self._token_principal(self.token_secret, credential)
        digest = hashlib.sha256(credential.encode()).digest()
        started = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[1] > started and self.active:
            return hit[0]
        self.kv_reads += 1
        principal = await self.store.verify(credential)
        if principal is None:
            raise CredentialRefusedError("key")
        if self.active and self._changed.get(principal.key_id, -1.0) < started:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[digest] = (principal, started + self.ttl_s)
        return principal

    async def _token_principal(self, secret: bytes, token: str) -> Principal:
        """The principal of a valid ``api`` token whose API key is unrevoked and of its tenant."""
        try:
            principal = principal_of(verify_token(secret, token, "api"))
        except TokenExpiredError:
            raise CredentialRefusedError("expired") from None
        except TokenInvalidError:
            raise CredentialRefusedError("token") from None
        record = await self._key_record(principal.key_id)
        if record is None or record.tenant != principal.tenant:
            raise CredentialRefusedError("token")
        if record.revoked_at is not None:
            raise CredentialRefusedError("revoked")
        return principal

    async def _key_record(self, key_id: str) -> ApiKeyRecord | None:
        """The record of ``key_id``, cached like a verified key (dropped when its KV entry changes)."""
        started = time.monotonic()
        hit = self._records.get(key_id)
        if hit is not None and hit[1] > started and self.active:
            return hit[0]
        self.kv_reads += 1
        record = await self.store.get(key_id)
        if self.active and self._changed.get(key_id, -1.0) < started:
            if len(self._records) >= self.max_entries:
                self._records.clear()
            self._records[key_id] = (record, started + self.ttl_s)
        return record

    def invalidate(self, key_id: str) -> None:
        """Forget every cached key of ``key_id`` and any verification of it already under way."""
        if len(self._changed) >= self.max_entries:
            self._changed.clear()
        self._changed[key_id] = time.monotonic()
        for digest in [d for d, (p, _) in self._entries.items() if p.key_id == key_id]:
            del self._entries[digest]
        self._records.pop(key_id, None)

    def _on_entry(self, entry: KeyValue.Entry, initial: bool) -> None:
        if not initial:  # the snapshot only says which keys exist: changes come after it
            self.invalidate(entry.key)
