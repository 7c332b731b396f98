"""Who is asking: an API key (``Authorization: Bearer gr_...``) or a job's stream token (``?token=``).

A stream token is minted by the gateway with the deployment's ``signing_secret`` for one job
(claims ``job`` and ``tenant``, audience ``stream``); it opens that job's event stream only. Anything
of another tenant, or that does not exist, is a 404 so ids cannot be probed. The tenant's feed
(``/v1/events``) also takes a feed token: a stream token with claims ``tenant`` and ``scope: tenant``
(the dashboard's pages hold one), which opens nothing else.
"""

from __future__ import annotations

from fastapi import Request
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.ids import ID_PATTERN, tenant_key
from services.common.auth.key_cache import KeyCache
from services.common.auth.tokens import TokenExpiredError, TokenInvalidError, verify_token
from services.common.http.auth import unauthorized
from services.common.http.problem import ProblemError


async def api_key_tenant(request: Request, keys: KeyCache) -> str | None:
    """The tenant of a valid Bearer key; ``None`` when no Authorization header is sent; 401 if invalid."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise unauthorized("Send 'Authorization: Bearer <api key>'.")
    principal = await keys.verify(credential.strip())
    if principal is None:
        raise unauthorized("The API key is invalid or revoked.")
    return principal.tenant


def _token_tenant(secret: bytes, token: str, expired: str, invalid: str, *, job: str | None = None) -> str:
    """The tenant a valid stream token names: of ``job``, or (no job) a feed token (``scope: tenant``);
    401 with ``expired`` or ``invalid``."""
    try:
        if job is not None:
            claims = verify_token(secret, token, "stream", job=job)
        else:
            claims = verify_token(secret, token, "stream", scope="tenant")
    except TokenExpiredError:
        raise unauthorized(expired) from None
    except TokenInvalidError:
        raise unauthorized(invalid) from None
    claimed = claims.get("tenant")
    if not isinstance(claimed, str):
        raise unauthorized("The stream token names no tenant.")
    return claimed


async def require_tenant(request: Request, keys: KeyCache, signing_secret: bytes, job_id: str | None) -> str:
    """The caller's tenant from an API key, or (for a job's stream only) from a stream token."""
    tenant = await api_key_tenant(request, keys)
    if tenant is not None:
        return tenant
    token = request.query_params.get("token")
    if not token:
        raise unauthorized("An API key or a stream token (?token=) is required.")
    if job_id is None:
        raise unauthorized("A stream token opens one job's events only; use an API key here.")
    expired = "The stream token has expired; read the job again for a fresh one."
    return _token_tenant(signing_secret, token, expired, "The stream token is not valid for this job.", job=job_id)


async def feed_tenant(request: Request, keys: KeyCache, signing_secret: bytes) -> str:
    """The caller's tenant for its whole feed: an API key, or a feed token as ``?token=``."""
    tenant = await api_key_tenant(request, keys)
    if tenant is not None:
        return tenant
    token = request.query_params.get("token")
    if not token:
        raise unauthorized("An API key is required: send 'Authorization: Bearer <key>'.")
    expired = "The feed token has expired; load the page again for a fresh one."
    return _token_tenant(signing_secret, token, expired, "The token does not open this tenant's feed.")


async def exists(kv: KeyValue, tenant: str, resource_id: str) -> bool:
    """Whether ``tenant`` has ``resource_id`` in ``kv`` (keys are ``{tenant}.{id}``)."""
    if not ID_PATTERN.fullmatch(resource_id):
        return False
    try:
        entry = await kv.get(tenant_key(tenant, resource_id))
    except KeyNotFoundError:
        return False
    return bool(entry.value)


def not_found(what: str, resource_id: str) -> ProblemError:
    """The 404 for anything missing or of another tenant."""
    return ProblemError(404, f"No {what} {resource_id!r}.")
