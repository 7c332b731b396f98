"""FastAPI dependencies as ``Annotated`` aliases: the gateway state and the authenticated caller.

A caller sends ``Authorization: Bearer <api key or scoped token>``. :data:`PrincipalDep` is any valid
credential (401 otherwise, saying whether it is invalid, expired or its key revoked); the scope
aliases (:data:`JobsWrite`, ...) also require a scope (403 problem naming it); :data:`KeyDep` is an
API key or a dashboard page's full-access token; :data:`MinterDep` an API key itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from services.common.auth.apikeys import Principal
from services.common.auth.key_cache import CredentialRefusedError
from services.common.auth.scoped import FULL_ACCESS, Scope, allows, robot_refusal
from services.common.http.auth import forbidden, missing_scope, narrowed, unauthorized
from services.gateway.state import GatewayState

_bearer = HTTPBearer(
    auto_error=False, description="An API key (`gr_...`) or a scoped token (`POST /v1/tokens`) as Bearer."
)


async def get_state(request: Request) -> GatewayState:
    """The gateway state built in the lifespan."""
    state: GatewayState = request.app.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


async def authenticate(state: GatewayState, credential: str | None) -> Principal:
    """The caller behind ``credential``; 401 saying why when there is none or it is refused."""
    if not credential:
        raise unauthorized("An API key or a token is required: send 'Authorization: Bearer <key or token>'.")
    try:
        return await state.key_cache.authenticate(credential)
    except CredentialRefusedError as exc:
        raise unauthorized(str(exc)) from None


async def require_principal(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller behind a valid ``Authorization: Bearer`` key or token; 401 otherwise."""
    valid = credentials is not None and credentials.scheme.lower() == "bearer"
    return await authenticate(state, credentials.credentials if valid and credentials else None)


PrincipalDep = Annotated[Principal, Depends(require_principal)]


def bearer_credential(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer …`` header, as :func:`require_principal` reads it."""
    scheme, credential = get_authorization_scheme_param(authorization)
    return credential if authorization and credential and scheme.lower() == "bearer" else None


def require_scope(*scopes: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller, holding one of ``scopes`` (403 naming them otherwise)."""

    async def scoped(principal: PrincipalDep) -> Principal:
        return check_scope(principal, *scopes)

    return scoped


def check_scope(principal: Principal, *scopes: str) -> Principal:
    """``principal`` when it holds one of ``scopes``; else the 403 naming them."""
    if not any(allows(principal, scope) for scope in scopes):
        raise missing_scope(*scopes)
    return principal


def check_robot(principal: Principal, robot_id: str) -> None:
    """403 when the token's ``robot_id`` is another robot."""
    if (refusal := robot_refusal(principal, robot_id)) is not None:
        raise narrowed(refusal)


async def require_key(principal: PrincipalDep) -> Principal:
    """An API key, or a dashboard page's full-access token (webhooks, dead letters, CORS origins)."""
    if principal.scopes is not None and FULL_ACCESS not in principal.scopes:
        raise forbidden("This route takes an API key, not a scoped token.")
    return principal


async def require_minter(principal: PrincipalDep) -> Principal:
    """An API key itself: a token cannot mint tokens."""
    if not principal.is_key:
        raise forbidden("A token cannot mint tokens: mint them with the API key, on your server.")
    return principal


UploadsWrite = Annotated[Principal, Depends(require_scope(Scope.UPLOADS_WRITE))]
JobsWrite = Annotated[Principal, Depends(require_scope(Scope.JOBS_WRITE))]
JobsRead = Annotated[Principal, Depends(require_scope(Scope.JOBS_READ))]
SessionsWrite = Annotated[Principal, Depends(require_scope(Scope.SESSIONS_WRITE))]
SessionsRead = Annotated[Principal, Depends(require_scope(Scope.JOBS_READ, Scope.SESSIONS_WRITE))]
"""A session's own view (status, its PLY): a reader of jobs, or whoever drives the session."""
RobotsWrite = Annotated[Principal, Depends(require_scope(Scope.ROBOTS_WRITE))]
RobotsRead = Annotated[Principal, Depends(require_scope(Scope.ROBOTS_READ))]
KeyDep = Annotated[Principal, Depends(require_key)]
MinterDep = Annotated[Principal, Depends(require_minter)]
