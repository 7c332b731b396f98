"""Scoped API tokens: what an app's server mints (``POST /v1/tokens``) for a browser that must never
hold the API key, and what the gateway itself hands out (a dashboard page's token, a job's stream token).

A scoped token is a :mod:`~services.common.auth.tokens` JWT with audience ``api`` and the claims
``tenant``, ``key_id`` (the API key it was minted with: it dies with that key), ``scopes``, and
optionally ``kinds``, ``robot_id``, ``sub`` (the app's end user) and ``job`` (one job's events only).
:func:`principal_of` turns verified claims into the :class:`~services.common.auth.apikeys.Principal`
every route checks. A token never mints a token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contracts.api.tokens import KIND_SCOPES, ROBOT_SCOPES, Scope
from services.common.auth.apikeys import Principal
from services.common.auth.tokens import TokenInvalidError, mint_token

FULL_ACCESS = "*"
"""The dashboard page token's scope: every route its API key reaches, except minting tokens."""
MINTABLE = frozenset(scope.value for scope in Scope)
"""The scopes ``POST /v1/tokens`` grants."""
__all__ = ["KIND_SCOPES", "ROBOT_SCOPES", "Scope"]


def mint_api_token(
    secret: bytes,
    minter: Principal,
    ttl_s: float,
    scopes: Iterable[str],
    *,
    kinds: Iterable[str] | None = None,
    subject: str | None = None,
    robot_id: str | None = None,
    job: str | None = None,
    now: float | None = None,
) -> str:
    """A scoped token of ``minter``'s tenant and key; a subject-bound minter's subject carries over."""
    return mint_token(
        secret,
        "api",
        ttl_s,
        now=now,
        tenant=minter.tenant,
        key_id=minter.key_id,
        scopes=sorted(set(scopes)),
        kinds=sorted(set(kinds)) if kinds is not None else None,
        sub=subject if subject is not None else minter.subject,
        robot_id=robot_id,
        job=job,
    )


def stream_token(secret: bytes, viewer: Principal, job_id: str, ttl_s: float) -> str:
    """A job's stream token: ``events:read`` of that one job, for ``?token=`` on its SSE (and a session's
    socket), minted for whoever read the job."""
    return mint_api_token(secret, viewer, ttl_s, [Scope.EVENTS_READ], job=job_id)


def page_token(secret: bytes, viewer: Principal, ttl_s: float) -> str:
    """A dashboard page's API token: everything the signed-in key may do but mint tokens."""
    return mint_api_token(secret, viewer, ttl_s, [FULL_ACCESS])


def feed_token(secret: bytes, viewer: Principal, ttl_s: float) -> str:
    """A dashboard page's feed token: ``events:read`` of the whole tenant (``GET /v1/events``)."""
    return mint_api_token(secret, viewer, ttl_s, [Scope.EVENTS_READ])


def _strings(claims: dict[str, Any], name: str) -> frozenset[str] | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TokenInvalidError(f"the token's {name} is not a list of strings")
    return frozenset(value)


def _string(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise TokenInvalidError(f"the token's {name} is not a string")
    return value


def principal_of(claims: dict[str, Any]) -> Principal:
    """The caller a verified ``api`` token names; :class:`TokenInvalidError` when a claim is missing or ill-typed."""
    tenant, key_id = _string(claims, "tenant"), _string(claims, "key_id")
    scopes = _strings(claims, "scopes")
    if tenant is None or key_id is None or scopes is None:
        raise TokenInvalidError("the token lacks its tenant, key or scopes")
    return Principal(
        tenant=tenant,
        key_id=key_id,
        scopes=scopes,
        kinds=_strings(claims, "kinds"),
        subject=_string(claims, "sub"),
        robot_id=_string(claims, "robot_id"),
        job=_string(claims, "job"),
    )


def allows(principal: Principal, scope: str) -> bool:
    """Whether ``principal`` holds ``scope`` (an API key and a full-access page token hold every one)."""
    return principal.scopes is None or FULL_ACCESS in principal.scopes or scope in principal.scopes


def kind_refusal(principal: Principal, kind: str) -> str | None:
    """Why ``principal`` may not act on a job or session of ``kind`` (its ``kinds``), else ``None``."""
    if principal.kinds is None or kind in principal.kinds:
        return None
    return f"This token is limited to the kinds {', '.join(sorted(principal.kinds))}; not {kind}."


def robot_refusal(principal: Principal, robot_id: str) -> str | None:
    """Why ``principal`` may not reach robot ``robot_id`` (its ``robot_id``), else ``None``."""
    if principal.robot_id is None or principal.robot_id == robot_id:
        return None
    return f"This token is limited to robot {principal.robot_id!r}."
