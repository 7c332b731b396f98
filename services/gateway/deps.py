"""FastAPI dependencies as ``Annotated`` aliases: the gateway state and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.common.auth.apikeys import Principal
from services.common.http.auth import unauthorized
from services.gateway.state import GatewayState

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer gr_...`.")


async def get_state(request: Request) -> GatewayState:
    """The gateway state built in the lifespan."""
    state: GatewayState = request.app.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


async def require_principal(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The tenant behind a valid ``Authorization: Bearer`` API key; 401 otherwise."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized("An API key is required: send 'Authorization: Bearer <key>'.")
    principal = await state.key_cache.verify(credentials.credentials)
    if principal is None:
        raise unauthorized("The API key is invalid or revoked.")
    return principal


PrincipalDep = Annotated[Principal, Depends(require_principal)]
