"""Short-lived HMAC-SHA256 tokens: SSE stream tokens, job-scoped worker ingest tokens and the
dashboard's tenant tokens (:mod:`services.common.auth.key_cache` accepts those as API keys).

A token is ``v1.<claims>.<signature>``, both parts base64url without padding. The claims are
compact JSON with an audience (``aud``), so a stream token can never be used as an ingest token,
and an expiry (``exp``, Unix seconds). Verification is constant-time and checks the audience,
the expiry and every claim the caller pins (job id, attempt).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Literal

Audience = Literal["stream", "ingest", "compat", "dashboard"]
_VERSION = "v1"


class TokenError(Exception):
    """A token that must be refused."""


class TokenInvalidError(TokenError):
    """Malformed, tampered, or for another audience or resource."""


class TokenExpiredError(TokenError):
    """Correctly signed, but past its expiry."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: str) -> bytes:
    return hmac.new(secret, f"{_VERSION}.{body}".encode(), hashlib.sha256).digest()


def mint_token(secret: bytes, aud: Audience, ttl_s: float, *, now: float | None = None, **claims: str | int) -> str:
    """A token for ``aud`` carrying ``claims``, valid for ``ttl_s`` seconds."""
    issued = time.time() if now is None else now
    payload = {"aud": aud, "exp": int(issued + ttl_s), **claims}
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{_VERSION}.{body}.{_b64(_mac(secret, body))}"


def verify_token(
    secret: bytes, token: str, aud: Audience, *, now: float | None = None, **expected: str | int
) -> dict[str, Any]:
    """The claims of a valid token for ``aud`` whose claims equal ``expected``; else raise."""
    try:
        version, body, signature = token.split(".")
        if version != _VERSION or not hmac.compare_digest(_unb64(signature), _mac(secret, body)):
            raise TokenInvalidError("bad token signature")
        claims = json.loads(_unb64(body))
    except (ValueError, TypeError) as exc:
        raise TokenInvalidError("malformed token") from exc
    if not isinstance(claims, dict) or claims.get("aud") != aud:
        raise TokenInvalidError(f"not a {aud} token")
    for name, value in expected.items():
        if claims.get(name) != value:
            raise TokenInvalidError(f"token is not valid for this {name}")
    exp = claims.get("exp")
    if not isinstance(exp, int) or (time.time() if now is None else now) >= exp:
        raise TokenExpiredError("token expired")
    return claims
