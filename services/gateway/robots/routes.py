"""``/v1/robots/{robot_id}/joints``: joint-angle telemetry from LeRobot arms, at telemetry speed.

``POST`` takes one sample or a batch and answers 202 ``{"accepted": n}``; ``GET .../latest`` the
newest sample; ``WS .../ws`` streams (:mod:`services.gateway.robots.socket`). How samples are
published and the latest kept: :mod:`services.gateway.robots.ingest`.

The POST is the hottest route of the gateway, so it reads its body and caller itself rather than
through FastAPI's parameters and dependencies: pydantic-core parsing the bytes is twice as fast on
a batch as ``json.loads`` and a model, and solving the bearer, state and principal dependencies
cost a quarter of a single-sample POST. OpenAPI still documents its body and security.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import nats.errors
from fastapi import APIRouter, FastAPI, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError

from contracts.api.robots import JointEventEncoder, JointsAccepted, JointSampleIn, JointsPost
from contracts.events.robots import JointSample
from contracts.ids import ID_PATTERN, tenant_key
from services.common.auth.apikeys import Principal
from services.common.auth.scoped import Scope
from services.common.http.problem import ProblemError, field_error, problem_responses, unprocessable
from services.gateway.deps import RobotsRead, check_robot, check_scope, require_principal
from services.gateway.robots.ingest import (
    MAX_FIELD_ERRORS,
    Telemetry,
    TelemetryUnavailableError,
    count_errors,
    receipt_time,
)
from services.gateway.robots.registry import RobotLimitError
from services.gateway.robots.socket import joints_ws


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's lifespan (NATS is connected): the telemetry of this app."""
    telemetry = Telemetry(app.state.gateway)
    app.state.robot_telemetry = telemetry
    await telemetry.start()
    try:
        yield
    finally:
        await telemetry.stop()


def telemetry_of(request: Request) -> Telemetry:
    """The app's :class:`Telemetry` (read straight from the request: no dependency to solve)."""
    telemetry: Telemetry = request.app.state.robot_telemetry
    return telemetry


RobotIdPath = Annotated[
    str,
    Path(
        description="The robot: 1-64 letters, digits, '_' or '-' (checked after auth, like every id).",
        json_schema_extra={"pattern": ID_PATTERN.pattern},
    ),
]
router = APIRouter(prefix="/v1/robots", tags=["robots"], lifespan=_lifespan)


def unavailable(exc: Exception) -> ProblemError:
    """503: NATS did not answer."""
    return ProblemError(503, f"NATS did not answer ({exc}); retry.", headers={"Retry-After": "1"})


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` inlined, as an OpenAPI request body schema needs them."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {key: walk(value) for key, value in node.items()}
        return [walk(value) for value in node] if isinstance(node, list) else node

    result: dict[str, Any] = walk(schema)
    return result


_BODY_DOC = {
    "required": True,
    "content": {"application/json": {"schema": _inline_refs(JointsPost.model_json_schema())}},
}


async def _principal(request: Request, telemetry: Telemetry) -> Principal:
    """The caller, through the key cache; else the 401 of :func:`require_principal`, as on every route.
    It must hold ``robots:write`` (403)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if not (scheme.lower() == "bearer" and key and (principal := await telemetry.principal(key)) is not None):
        credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=key) if key else None
        principal = await require_principal(telemetry.state, credentials)
    return check_scope(principal, Scope.ROBOTS_WRITE)


def _checked(robot_id: str) -> str:
    """``robot_id`` when it is one safe subject token, else a 422 naming it."""
    if not ID_PATTERN.fullmatch(robot_id):
        raise unprocessable(
            "The robot id is not valid.",
            field_error(("path", "robot_id"), "must be 1-64 letters, digits, '_' or '-'", "string_pattern_mismatch"),
        )
    return robot_id


async def _body(request: Request) -> JointsPost:
    """The body, parsed and validated by pydantic-core straight from the bytes (``NaN`` included)."""
    try:
        return JointsPost.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = [field_error(("body", *e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
        raise unprocessable("The request is not valid.", *errors[:MAX_FIELD_ERRORS]) from None


async def _admit(telemetry: Telemetry, tenant: str, robot_id: str) -> None:
    """Nothing when the robot may publish; 429 when it would be one robot too many, 503 when NATS is down."""
    try:
        await telemetry.admit(tenant, robot_id)
    except RobotLimitError as exc:
        raise ProblemError(429, str(exc), title="Too many robots") from None
    except (nats.errors.Error, TimeoutError) as exc:
        raise unavailable(exc) from exc


@router.post(
    "/{robot_id}/joints",
    status_code=202,
    response_model=JointsAccepted,
    summary="Publish joint angles: one sample or a batch",
    response_description="How many samples were published to the robot's telemetry.",
    responses=problem_responses(401, 403, 413, 422, 429, 503),
    openapi_extra={"requestBody": _BODY_DOC, "security": [{"HTTPBearer": []}]},
)
async def post_joints(robot_id: RobotIdPath, request: Request) -> Response:
    """Angles in radians, finite, within ±2π, ``robot_joint_count`` per sample; ``ts`` defaults to now.

    A batch is published in order and answered once JetStream has stored it; a single sample is
    handed to NATS without waiting for its ack. 429 for a new robot of a tenant that has
    ``robot_max_per_tenant`` robots already (a robot silent for ``robot_latest_ttl_s`` is forgotten).
    """
    telemetry = telemetry_of(request)
    principal = await _principal(request, telemetry)
    robot_id = _checked(robot_id)
    check_robot(principal, robot_id)
    body = await _body(request)
    settings = telemetry.settings
    samples = body.as_samples()
    batch = body.samples is not None
    if len(samples) > settings.robot_max_batch:
        raise unprocessable(
            "The batch is too large.",
            field_error(("body", "samples"), f"at most {settings.robot_max_batch} samples per batch"),
        )
    prefix = ("body", "samples") if batch else ("body",)
    errors = count_errors(samples, settings.robot_joint_count, prefix, indexed=batch)
    if errors:
        raise unprocessable("Some samples have the wrong number of joint angles.", *errors)
    accepted = await publish_samples(telemetry, principal.tenant, robot_id, samples, confirm=batch)
    return Response(f'{{"accepted":{accepted}}}', status_code=202, media_type="application/json")


async def publish_samples(
    telemetry: Telemetry, tenant: str, robot_id: str, samples: list[JointSampleIn], *, confirm: bool
) -> int:
    """Admit the robot, publish ``samples`` (checked) in order and remember the last; how many went.

    429 for a robot too many, 503 when NATS does not answer.
    """
    await _admit(telemetry, tenant, robot_id)
    encoder = JointEventEncoder(tenant, robot_id)
    received = receipt_time()
    data = b""
    payloads = []
    for sample in samples:
        data = encoder.data(sample, received)
        payloads.append(encoder.envelope(data, received))
    subject = telemetry.state.subjects.robot_joints(tenant, robot_id)
    try:
        await telemetry.publish(subject, payloads, confirm=confirm)
        await telemetry.remember(tenant_key(tenant, robot_id), data)
    except (TelemetryUnavailableError, nats.errors.Error, TimeoutError) as exc:
        raise unavailable(exc) from exc
    return len(payloads)


@router.get(
    "/{robot_id}/joints/latest",
    summary="Read a robot's latest joint angles",
    response_model=JointSample,
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def latest_joints(robot_id: RobotIdPath, principal: RobotsRead, request: Request) -> Response:
    """The newest sample published for this robot of the caller's tenant; 404 when there is none."""
    check_robot(principal, robot_id)
    key = tenant_key(principal.tenant, _checked(robot_id))
    try:
        data = await telemetry_of(request).latest(key)
    except (nats.errors.Error, TimeoutError) as exc:
        raise unavailable(exc) from exc
    if data is None:
        raise ProblemError(404, f"No joint angles for robot {robot_id!r}.")
    return Response(content=data, media_type="application/json")


router.add_api_websocket_route("/{robot_id}/joints/ws", joints_ws, name="joints_ws")
