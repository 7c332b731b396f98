"""Short-lived signed tokens: one mechanism, JSON Web Tokens signed HS256 by PyJWT.

Every token gpurelay hands out is a JWT with ``iss`` ``gpurelay``, an audience (``aud``), ``iat``,
``exp`` and a ``jti``: scoped API tokens (audience ``api``: ``POST /v1/tokens``, the dashboard's
page tokens, a job's stream token; :mod:`services.common.auth.scoped`), the seed routes' capability
tokens (``compat``) and the workers' ingest tokens (``ingest``, signed with their own secret). The
audience keeps each kind to its own routes: a stream token is never an ingest token. Verification
checks the signature, the issuer, the audience, the expiry and every claim the caller pins.

The HMAC key is derived from the deployment's secret (HMAC-SHA256 with a fixed label), so tokens and
signed URLs never share a key and a short secret still gives PyJWT a 256-bit key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any, Literal

import jwt
from jwt.types import Options

Audience = Literal["api", "ingest", "compat"]
ISSUER = "gpurelay"
ALGORITHM = "HS256"


class TokenError(Exception):
    """A token that must be refused."""


class TokenInvalidError(TokenError):
    """Malformed, tampered, or for another audience or resource."""


class TokenExpiredError(TokenError):
    """Correctly signed, but past its expiry."""


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, b"gpurelay token key v1", hashlib.sha256).digest()


def mint_token(secret: bytes, aud: Audience, ttl_s: float, *, now: float | None = None, **claims: Any) -> str:
    """A token for ``aud`` carrying ``claims`` (``None`` values left out), valid for ``ttl_s`` seconds."""
    issued = int(time.time() if now is None else now)
    payload = {k: v for k, v in claims.items() if v is not None}
    payload |= {"iss": ISSUER, "aud": aud, "iat": issued, "exp": int(issued + ttl_s), "jti": secrets.token_hex(8)}
    return jwt.encode(payload, _key(secret), algorithm=ALGORITHM)


def looks_like_token(credential: str) -> bool:
    """Whether ``credential`` has a JWT's shape (three dot-separated parts), not an API key's."""
    return credential.count(".") == 2 and not credential.startswith("gr_")


def verify_token(
    secret: bytes, token: str, aud: Audience, *, now: float | None = None, **expected: Any
) -> dict[str, Any]:
    """The claims of a valid token for ``aud`` whose claims equal ``expected``; else raise.

    ``now`` (tests) replaces the clock for the expiry; PyJWT checks everything else.
    """
    options: Options = {"require": ["exp", "iat", "iss", "aud"], "verify_exp": now is None}
    try:
        claims: dict[str, Any] = jwt.decode(
            token, _key(secret), algorithms=[ALGORITHM], audience=aud, issuer=ISSUER, options=options
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpiredError("token expired") from None
    except jwt.InvalidAudienceError:
        raise TokenInvalidError(f"not a {aud} token") from None
    except jwt.PyJWTError as exc:
        raise TokenInvalidError(f"malformed or tampered token ({type(exc).__name__})") from None
    for name, value in expected.items():
        if claims.get(name) != value:
            raise TokenInvalidError(f"token is not valid for this {name}")
    exp = claims["exp"]
    if now is not None and (not isinstance(exp, int) or now >= exp):
        raise TokenExpiredError("token expired")
    return claims
