"""Signed tokens (JWTs through PyJWT): tampering, audience, pinned claims, expiry, the algorithm."""

from __future__ import annotations

import jwt
import pytest

from services.common.auth.tokens import TokenExpiredError, TokenInvalidError, mint_token, verify_token

SECRET = b"k" * 32


def test_round_trip_with_pinned_claims() -> None:
    token = mint_token(SECRET, "ingest", 60, now=1000, job="job_1", attempt=2)
    claims = verify_token(SECRET, token, "ingest", now=1001, job="job_1", attempt=2)
    assert claims["exp"] == 1060


@pytest.mark.parametrize(
    ("pinned", "why"),
    [({"job": "job_2", "attempt": 2}, "another job"), ({"job": "job_1", "attempt": 1}, "another attempt")],
)
def test_other_job_or_attempt_is_refused(pinned: dict[str, str | int], why: str) -> None:
    token = mint_token(SECRET, "ingest", 60, now=1000, job="job_1", attempt=2)
    with pytest.raises(TokenInvalidError):
        verify_token(SECRET, token, "ingest", now=1001, **pinned)


def test_audience_is_checked() -> None:
    token = mint_token(SECRET, "api", 60, now=1000, job="job_1")
    with pytest.raises(TokenInvalidError):
        verify_token(SECRET, token, "ingest", now=1001, job="job_1")


def test_expired_token_is_refused() -> None:
    token = mint_token(SECRET, "api", 60, now=1000, job="job_1")
    with pytest.raises(TokenExpiredError):
        verify_token(SECRET, token, "api", now=1060, job="job_1")


def other_signature(token: str) -> str:
    """``token`` with its signature's first character changed: 6 bits of the MAC, so never the same
    signature (replacing its last characters was once a no-op: the random ``jti`` gave a signature
    ending in what replaced it, and a last character's low bits are padding)."""
    head, _, signature = token.rpartition(".")
    return f"{head}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


@pytest.mark.parametrize(
    "mangle", [other_signature, lambda t: t.replace(".", ".x", 1), lambda t: "x", str.upper, lambda t: t + "."]
)
def test_tampered_or_malformed_token_is_refused(mangle: object) -> None:
    token = mint_token(SECRET, "api", 60, now=1000, job="job_1")
    assert callable(mangle)
    assert mangle(token) != token
    with pytest.raises(TokenInvalidError):
        verify_token(SECRET, mangle(token), "api", now=1001, job="job_1")


def test_other_secret_is_refused() -> None:
    token = mint_token(SECRET, "api", 60, now=1000, job="job_1")
    with pytest.raises(TokenInvalidError):
        verify_token(b"z" * 32, token, "api", now=1001, job="job_1")


def test_a_token_is_a_standard_hs256_jwt_with_issuer_and_id() -> None:
    token = mint_token(SECRET, "api", 60, now=1000, tenant="acme")
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = verify_token(SECRET, token, "api", now=1001)
    assert (claims["iss"], claims["aud"], claims["iat"], claims["exp"], claims["tenant"]) == (
        "gpurelay",
        "api",
        1000,
        1060,
        "acme",
    )
    assert claims["jti"] != verify_token(SECRET, mint_token(SECRET, "api", 60, now=1000), "api", now=1001)["jti"]


def test_an_unsigned_token_is_refused() -> None:
    """``alg: none`` (the classic JWT downgrade) never verifies."""
    claims = {"iss": "gpurelay", "aud": "api", "iat": 1000, "exp": 2**40, "tenant": "acme"}
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(TokenInvalidError):
        verify_token(SECRET, unsigned, "api")
