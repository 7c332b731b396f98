"""Who is asking: an API key or a scoped token, as ``Authorization: Bearer`` or (EventSource cannot set
headers) a token as ``?token=``; an API key in a URL is refused, never used.

Reading events takes ``events:read`` (403 naming it otherwise). A token bound to one job (a job's
stream token, in ``urls.events``) opens that job's events only; a token bound to a subject opens the
events of that subject's jobs and sessions only (another's is a 404, as another tenant's), and not the
tenant's whole feed. Anything of another tenant, or that does not exist, is a 404 so ids cannot be
probed.
"""

from __future__ import annotations

import json

from fastapi import Request
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.ids import ID_PATTERN, tenant_key
from services.common.auth.apikeys import Principal
from services.common.auth.key_cache import CredentialRefusedError, KeyCache
from services.common.auth.scoped import FULL_ACCESS, Scope, allows
from services.common.auth.tokens import looks_like_token
from services.common.http.auth import forbidden, missing_scope, unauthorized
from services.common.http.problem import ProblemError


async def _authenticate(keys: KeyCache, credential: str) -> Principal:
    try:
        return await keys.authenticate(credential)
    except CredentialRefusedError as exc:
        raise unauthorized(str(exc)) from None


async def header_principal(request: Request, keys: KeyCache) -> Principal | None:
    """The caller of a valid ``Authorization: Bearer``; ``None`` when no header is sent; 401 if refused."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise unauthorized("Send 'Authorization: Bearer <api key or token>'.")
    return await _authenticate(keys, credential.strip())


async def reader(request: Request, keys: KeyCache, job_id: str | None) -> Principal:
    """A caller who may read events: of ``job_id``, or (``None``) of the tenant's whole feed."""
    principal = await header_principal(request, keys)
    if principal is None:
        token = request.query_params.get("token")
        if not token:
            raise unauthorized("An API key or a token (?token=) is required.")
        if not looks_like_token(token):
            raise unauthorized("An API key never goes in a URL: send it as 'Authorization: Bearer', or a token here.")
        principal = await _authenticate(keys, token)
    if not allows(principal, Scope.EVENTS_READ):
        raise missing_scope(Scope.EVENTS_READ)
    if principal.job is not None and principal.job != job_id:
        raise unauthorized("A job's stream token opens that job's events only.")
    if job_id is None and principal.subject is not None:
        raise forbidden("A subject's token follows its own jobs' events (/v1/jobs/{id}/events), not the tenant's feed.")
    return principal


def key_holder(principal: Principal | None) -> Principal:
    """``principal`` when it is an API key or a full-access page token (webhook deliveries); else 401/403."""
    if principal is None:
        raise unauthorized("An API key is required: send 'Authorization: Bearer <key>'.")
    if principal.scopes is not None and FULL_ACCESS not in principal.scopes:
        raise forbidden("This route takes an API key, not a scoped token.")
    return principal


async def exists(kv: KeyValue, tenant: str, resource_id: str) -> bool:
    """Whether ``tenant`` has ``resource_id`` in ``kv`` (keys are ``{tenant}.{id}``)."""
    return await _value(kv, tenant, resource_id) is not None


async def visible(kv: KeyValue, viewer: Principal, resource_id: str) -> bool:
    """Whether ``viewer`` sees the record ``resource_id`` in ``kv``: of its tenant, and of its subject when
    it is bound to one."""
    value = await _value(kv, viewer.tenant, resource_id)
    if value is None:
        return False
    if viewer.subject is None:
        return True
    try:
        recorded = json.loads(value).get("subject")
    except (ValueError, AttributeError):
        return False
    return viewer.sees(recorded if isinstance(recorded, str) else None)


async def _value(kv: KeyValue, tenant: str, resource_id: str) -> bytes | None:
    if not ID_PATTERN.fullmatch(resource_id):
        return None
    try:
        entry = await kv.get(tenant_key(tenant, resource_id))
    except KeyNotFoundError:
        return None
    return entry.value or None


def not_found(what: str, resource_id: str) -> ProblemError:
    """The 404 for anything missing or of another tenant."""
    return ProblemError(404, f"No {what} {resource_id!r}.")
