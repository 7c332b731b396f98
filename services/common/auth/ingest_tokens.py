"""Job-scoped worker ingest tokens: minted by the dispatcher, verified by the gateway's ingest route.

An ingest token is a :mod:`services.common.auth.tokens` token with audience ``ingest`` and the claims
``tenant``, ``job`` (the job id) and ``attempt``. It lets a worker that cannot reach NATS post the
events of exactly one attempt of one job to ``POST /v1/internal/jobs/{job}/events``.

>>> token = mint_ingest_token(b"secret", "acme", "job_1", 2, ttl_s=60)
>>> verify_ingest_token(b"secret", token).attempt
2
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.ids import InvalidIdError, validate_id
from services.common.auth.tokens import TokenInvalidError, mint_token, verify_token


@dataclass(frozen=True, slots=True)
class IngestClaims:
    """What an ingest token grants: events of ``attempt`` of ``job_id`` of ``tenant``, until ``exp``."""

    tenant: str
    job_id: str
    attempt: int
    exp: int


def mint_ingest_token(
    secret: bytes, tenant: str, job_id: str, attempt: int, ttl_s: float, *, now: float | None = None
) -> str:
    """A token for the worker of ``attempt`` of ``job_id``, valid ``ttl_s`` seconds."""
    validate_id(tenant, "tenant")
    validate_id(job_id, "job id")
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    return mint_token(secret, "ingest", ttl_s, now=now, tenant=tenant, job=job_id, attempt=attempt)


def verify_ingest_token(secret: bytes, token: str, *, now: float | None = None) -> IngestClaims:
    """The claims of a valid ingest token.

    Raises :class:`~services.common.auth.tokens.TokenInvalidError` (malformed, tampered, another
    audience, missing claims) or :class:`~services.common.auth.tokens.TokenExpiredError`. The caller
    compares the claims with the job and events at hand.
    """
    claims = verify_token(secret, token, "ingest", now=now)
    tenant, job_id, attempt = claims.get("tenant"), claims.get("job"), claims.get("attempt")
    if not isinstance(tenant, str) or not isinstance(job_id, str):
        raise TokenInvalidError("ingest token lacks tenant or job")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise TokenInvalidError("ingest token lacks a valid attempt")
    try:
        validate_id(tenant, "tenant")
        validate_id(job_id, "job id")
    except InvalidIdError as exc:
        raise TokenInvalidError(str(exc)) from exc
    return IngestClaims(tenant=tenant, job_id=job_id, attempt=attempt, exp=int(claims["exp"]))
