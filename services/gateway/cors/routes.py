"""``GET`` / ``PUT /v1/cors``: the origins a tenant's front ends call gpurelay from. Stored in KV
``tenant_cors``; every gateway and notifier answers for them within the watch's delay (milliseconds)
(:mod:`services.common.http.cors`). An API key (or the dashboard's page token) only."""

from __future__ import annotations

from fastapi import APIRouter, Request

from contracts.api.cors import TenantCors
from services.common.http.problem import ProblemError, field_error, problem_responses, unprocessable
from services.common.http.tenant_origins import TenantOrigins
from services.gateway.deps import KeyDep, StateDep

router = APIRouter(prefix="/v1/cors", tags=["cors"])


def _origins(request: Request) -> TenantOrigins:
    origins: TenantOrigins | None = getattr(request.app.state, "tenant_origins", None)
    if origins is None:
        raise ProblemError(503, "The gateway is starting; retry.", headers={"Retry-After": "1"})
    return origins


@router.get("", summary="A tenant's CORS origins", responses=problem_responses(401, 403, 503))
async def get_cors(request: Request, principal: KeyDep) -> TenantCors:
    """The origins this tenant allows, beside the deployment's global list."""
    return TenantCors(origins=await _origins(request).get(principal.tenant))


@router.put("", summary="Set a tenant's CORS origins", responses=problem_responses(401, 403, 422, 503))
async def put_cors(body: TenantCors, request: Request, state: StateDep, principal: KeyDep) -> TenantCors:
    """Replace the tenant's origins (at most ``tenant_cors_max_origins``; an empty list removes them)."""
    limit = state.settings.tenant_cors_max_origins
    if len(body.origins) > limit:
        raise unprocessable("Too many origins.", field_error(("body", "origins"), f"at most {limit}"))
    await _origins(request).put(principal.tenant, body.origins)
    return body
