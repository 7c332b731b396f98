"""``GET /v1/kinds``: each routed workload with its params' JSON Schema, inputs, result, GPUs and price.

The schema is the spec model's own (``contracts.specs``), so a params object it accepts is one
``POST /v1/jobs`` accepts; GPUs and price come from the route table the dispatcher reads
(``GPURELAY_ROUTE_TABLE``, profile ``GPURELAY_ROUTE_PROFILE``), loaded once per gateway.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter

from contracts.api.kinds import RESULTS, KindList, KindOut, kind_inputs, params_schema
from contracts.route_table import Route, load_route_table
from contracts.specs.jobs import SESSION_KINDS, JobKind
from services.common.http.problem import problem_responses
from services.gateway.deps import PrincipalDep, StateDep

router = APIRouter(prefix="/v1/kinds", tags=["kinds"])


@cache
def routes_of(path: Path, profile: str) -> dict[JobKind, Route]:
    """The routes of ``profile`` in the table at ``path``."""
    return load_route_table(path).profile(profile)


def _gpus(route: Route) -> list[str]:
    gpus: list[str] = []
    for stage in route.steps():
        gpus += [gpu for gpu in route.stage_gpus(stage) if gpu not in gpus]
    return gpus


def kind_out(kind: JobKind, route: Route) -> KindOut:
    """What ``GET /v1/kinds`` says of ``kind`` routed by ``route``."""
    summary, result = RESULTS[kind]
    return KindOut(
        kind=kind,
        session=kind in SESSION_KINDS,
        summary=summary,
        params_schema=params_schema(kind),
        inputs=kind_inputs(kind),
        result=result,
        gpus=_gpus(route),
        price_per_gpu_second=route.price_per_gpu_hour / 3600.0,
        stages=[stage.name for stage in route.stages],
    )


@router.get("", summary="List the workloads", responses=problem_responses(401))
async def list_kinds(state: StateDep, principal: PrincipalDep) -> KindList:
    """Every kind this deployment routes (a token limited to some kinds: those), in the order of ``kind``."""
    settings = state.settings
    routes = routes_of(settings.route_table, settings.route_profile)
    kinds = [k for k in JobKind if k in routes and (principal.kinds is None or k in principal.kinds)]
    return KindList(items=[kind_out(kind, routes[kind]) for kind in kinds])
