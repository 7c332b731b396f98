"""HMAC-SHA256 signed, expiring blob URLs for the local storage backend.

The signature covers the operation, the key, the expiry and, for uploads, the content type and the
maximum size (for downloads, the optional attachment file name). The signed string is the compact
JSON array of those fields, so no field can bleed into another. The query string is
``op``, ``exp`` (Unix seconds), ``ct``, ``max``, ``fn`` and ``sig`` (URL-safe base64, no padding).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode

Op = Literal["put", "get"]
_VERSION = "gpurelay-blob-v1"


class SignatureError(Exception):
    """A signed URL was refused."""


class SignatureInvalidError(SignatureError):
    """The signature is missing, malformed or does not match: the URL was tampered with."""


class SignatureExpiredError(SignatureError):
    """The signature is genuine but its expiry has passed."""


@dataclass(frozen=True)
class Grant:
    """What a signed URL allows: one operation on one key until ``expires_at`` (Unix seconds)."""

    op: Op
    key: str
    expires_at: int
    content_type: str | None = None
    max_size: int | None = None
    filename: str | None = None


def _digest(secret: bytes, grant: Grant) -> bytes:
    fields = [
        _VERSION,
        grant.op,
        grant.key,
        grant.expires_at,
        grant.content_type,
        grant.max_size,
        grant.filename,
    ]
    message = json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def sign(secret: bytes, grant: Grant) -> str:
    """The URL-safe signature of ``grant``."""
    return _b64(_digest(secret, grant))


def grant_query(secret: bytes, grant: Grant) -> dict[str, str]:
    """The query parameters (signature included) that carry ``grant``."""
    query = {"op": grant.op, "exp": str(grant.expires_at)}
    if grant.content_type is not None:
        query["ct"] = grant.content_type
    if grant.max_size is not None:
        query["max"] = str(grant.max_size)
    if grant.filename is not None:
        query["fn"] = grant.filename
    query["sig"] = sign(secret, grant)
    return query


def signed_url(base_url: str, secret: bytes, grant: Grant) -> str:
    """``{base_url}/v1/blobs/{key}?{query}`` for ``grant``."""
    path = quote(grant.key, safe="/")
    return f"{base_url.rstrip('/')}/v1/blobs/{path}?{urlencode(grant_query(secret, grant))}"


def _int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise SignatureInvalidError(f"malformed {name!r} parameter")
    return int(value)


def verify(secret: bytes, op: Op, key: str, query: Mapping[str, str], *, now: float | None = None) -> Grant:
    """The grant carried by ``query`` for ``op`` on ``key``, or raise a :class:`SignatureError`.

    The signature is checked before the expiry, so a URL whose ``exp`` was edited is reported as
    tampered, never as expired.
    """
    sig = query.get("sig")
    expires_at = _int(query.get("exp"), "exp")
    if not sig or expires_at is None or query.get("op") != op:
        raise SignatureInvalidError("missing or mismatched signature parameters")
    grant = Grant(
        op=op,
        key=key,
        expires_at=expires_at,
        content_type=query.get("ct"),
        max_size=_int(query.get("max"), "max"),
        filename=query.get("fn"),
    )
    if not hmac.compare_digest(sign(secret, grant).encode(), sig.encode("utf-8", "replace")):
        raise SignatureInvalidError("signature does not match")
    if (time.time() if now is None else now) >= expires_at:
        raise SignatureExpiredError("signed URL has expired")
    return grant
