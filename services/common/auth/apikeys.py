"""API keys: ``gr_<key id>_<secret>``, stored only as SHA-256 hashes in KV ``apikeys``.

The key id (16 lowercase hex characters) is the KV key, so a lookup is one KV get. The secret has
256 bits of entropy, so a plain SHA-256 is the right hash (a slow password hash buys nothing
against a random 256-bit value). The plaintext key is returned once, at creation, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict

from contracts.ids import TenantId
from services.common.nats.kv import kv_entries

KEY_PATTERN = re.compile(r"^gr_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class ApiKeyRecord(BaseModel):
    """What KV ``apikeys`` holds per key: never the key itself."""

    model_config = ConfigDict(extra="forbid")

    key_id: str
    tenant: TenantId
    name: str = ""
    sha256: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the tenant every resource is scoped to, and what it may do there.

    An API key has ``scopes=None``: everything. A scoped token (:mod:`services.common.auth.scoped`)
    lists its scopes and may narrow them: ``kinds`` (jobs and sessions of these kinds), ``robot_id``
    (one robot), ``subject`` (one end user's resources only), ``job`` (one job's events).
    """

    tenant: str
    key_id: str
    scopes: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    subject: str | None = None
    robot_id: str | None = None
    job: str | None = None

    @property
    def is_key(self) -> bool:
        """An API key itself (not a token minted with it)."""
        return self.scopes is None

    def sees(self, subject: str | None) -> bool:
        """Whether a resource recorded for ``subject`` is this caller's: always, unless it is bound to a
        subject, then only that subject's."""
        return self.subject is None or self.subject == subject


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    """A new plaintext key, ``gr_<16 hex>_<43 base64url>`` (256 random bits)."""
    return f"gr_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


class ApiKeyStore:
    """Create, verify and revoke API keys in a KV bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def create(self, tenant: str, name: str = "") -> tuple[ApiKeyRecord, str]:
        """A new key for ``tenant``: its record and the plaintext, shown once."""
        plaintext = generate_key()
        record = ApiKeyRecord(
            key_id=plaintext[3:19],
            tenant=tenant,
            name=name,
            sha256=_hash(plaintext),
            created_at=datetime.now(UTC),
        )
        await self.kv.create(record.key_id, record.model_dump_json().encode())
        return record, plaintext

    async def adopt(self, tenant: str, plaintext: str, name: str = "") -> ApiKeyRecord:
        """Store a key made elsewhere (the dev key kept in the data dir); idempotent."""
        match = KEY_PATTERN.fullmatch(plaintext)
        if match is None:
            raise ValueError("not a gpurelay API key")
        existing = await self.get(match.group(1))
        if existing is not None and existing.revoked_at is None and existing.tenant == tenant:
            return existing
        record = ApiKeyRecord(
            key_id=match.group(1),
            tenant=tenant,
            name=name,
            sha256=_hash(plaintext),
            created_at=datetime.now(UTC),
        )
        await self.kv.put(record.key_id, record.model_dump_json().encode())
        return record

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """The record of ``key_id``, revoked or not."""
        if not re.fullmatch(r"[0-9a-f]{16}", key_id):
            return None
        try:
            entry = await self.kv.get(key_id)
        except KeyNotFoundError:
            return None
        return ApiKeyRecord.model_validate_json(entry.value) if entry.value else None

    async def verify(self, plaintext: str) -> Principal | None:
        """The principal of a valid, unrevoked key; ``None`` for anything else."""
        match = KEY_PATTERN.fullmatch(plaintext)
        if match is None:
            return None
        record = await self.get(match.group(1))
        if record is None or record.revoked_at is not None:
            return None
        if not hmac.compare_digest(record.sha256, _hash(plaintext)):
            return None
        return Principal(tenant=record.tenant, key_id=record.key_id)

    async def revoke(self, key_id: str) -> bool:
        """Revoke ``key_id``; ``False`` when there is no such key."""
        record = await self.get(key_id)
        if record is None:
            return False
        if record.revoked_at is None:
            revoked = record.model_copy(update={"revoked_at": datetime.now(UTC)})
            await self.kv.put(key_id, revoked.model_dump_json().encode())
        return True

    async def list(self, tenant: str | None = None) -> list[ApiKeyRecord]:
        """Every key's record, optionally of one tenant."""
        records = [ApiKeyRecord.model_validate_json(item.value) for item in await kv_entries(self.kv) if item.value]
        return [r for r in records if tenant is None or r.tenant == tenant]
