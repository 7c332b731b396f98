"""``/v1/sessions``: start a live session (splat, vlm), read it, push frames, stop, reset, the latest PLY.

A session is a job of a session kind: its id is a job id, ``GET /v1/jobs/{id}`` and
``POST /v1/jobs/{id}/cancel`` work on it too, and its events are the job's (SSE, webhooks). The
WebSocket (``urls.stream``) is in :mod:`services.gateway.sessions.stream`, the seed's routes
in :mod:`services.gateway.compat.so100`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, Path, Query, Request, Response
from starlette.routing import Match, Route
from starlette.types import Scope as AsgiScope

from contracts.api.sessions import FrameAccepted, SessionCreate, SessionOut
from contracts.api.tokens import Scope
from contracts.job_record import JobRecord
from contracts.session_feed import IMAGE_TYPES
from contracts.specs.jobs import SplatSpec, VlmSpec
from contracts.specs.session_params import vlm_model_refusal
from services.common.auth.apikeys import Principal
from services.common.http.problem import ProblemError, field_error, problem_responses, unprocessable
from services.gateway.deps import SessionsRead, SessionsWrite, StateDep, authenticate, bearer_credential, check_scope
from services.gateway.jobs.routes import IdempotencyKey, check_kind, submit_job
from services.gateway.sessions.feed import session_feed
from services.gateway.sessions.http import frame_key, intake_of, pose_header, read_frame, snapshot_response
from services.gateway.sessions.intake import SessionIntake
from services.gateway.sessions.stream import session_stream
from services.gateway.sessions.view import session_out
from services.gateway.settings import GatewaySettings
from services.gateway.state import GatewayState


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's lifespan (NATS is connected): the session intake of this app."""
    app.state.session_intake = intake = SessionIntake(app.state.gateway)
    try:
        yield
    finally:
        await intake.numbering.close()


router = APIRouter(prefix="/v1/sessions", tags=["sessions"], lifespan=_lifespan)
SessionIdPath = Annotated[str, Path(description="A session id (a job id), e.g. job_0193...")]
CaptureTime = Annotated[
    float | None, Query(ge=0, le=1e11, allow_inf_nan=False, description="Capture time, UNIX seconds (default: now).")
]
PoseHeader = Annotated[str | None, Header(alias="Gpurelay-Pose", description="16 numbers: a 4x4 camera→world pose.")]
FrameKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Retry-safe frame (1-255 printable ASCII): a repeat within FRAMES' duplicate window (2 min) "
        "is answered with the seq the first was stored as.",
    ),
]
FRAME_DOC = {
    "content": {
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
    },
    "required": True,
}


@router.post(
    "",
    status_code=201,
    summary="Start a live session",
    responses={**problem_responses(401, 403, 409, 422, 429, 503), 200: {"model": SessionOut, "description": "Replay"}},
)
async def create_session(
    spec: SessionCreate,
    request: Request,
    state: StateDep,
    principal: SessionsWrite,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> SessionOut:
    """Record the session (a job of a session kind) and publish ``job.created``; the dispatcher starts
    its worker. Without ``robot_id`` the session gets a robot of its own, named by its id. A vlm
    session may name only a model the deployment allows (422 otherwise)."""
    return await submit_session(request, state, principal, spec, response, idempotency_key)


async def submit_session(
    request: Request, state: GatewayState, principal: Principal, spec: SplatSpec | VlmSpec, response: Response,
    idempotency_key: str | None,
) -> SessionOut:  # fmt: skip
    """Check the model, record the session (201, or 200 for a replayed ``Idempotency-Key``); its view."""
    check_model(state.settings, spec)
    record, claimed = await submit_job(state, principal, spec, idempotency_key)
    response.status_code = 201 if claimed else 200
    out = await session_out(state, intake_of(request), record, principal)
    response.headers["Location"] = out.urls.self
    return out


def check_model(settings: GatewaySettings, spec: SplatSpec | VlmSpec) -> None:
    """422 on ``params.model`` when a vlm session names a model this deployment does not allow
    (``vlm_model`` and ``vlm_models``, the settings its workers hold too)."""
    if isinstance(spec, VlmSpec):
        refusal = vlm_model_refusal(spec.params.model, settings.vlm_model, settings.vlm_models)
        if refusal is not None:
            raise unprocessable(
                "The session's model is not allowed here.", field_error(("body", "params", "model"), refusal)
            )


async def own_session(request: Request, principal: Principal, session_id: str, *, fresh: bool = False) -> JobRecord:
    """The caller's session record; 404 for another tenant's or (a subject's token) another subject's."""
    record = await intake_of(request).record(principal.tenant, session_id, fresh=fresh)
    if not principal.sees(record.subject):
        raise ProblemError(404, f"No session {session_id!r}.")
    return record


@router.get("/{session_id}", summary="Read a session", responses=problem_responses(401, 403, 404, 409))
async def get_session(
    session_id: SessionIdPath, request: Request, state: StateDep, principal: SessionsRead
) -> SessionOut:
    """State, frames received / processed / dropped, the worker's latest figures, its artifacts (chunk PLYs,
    status.json, snapshots) with download URLs, cost so far."""
    record = await own_session(request, principal, session_id, fresh=True)
    return await session_out(state, intake_of(request), record, principal)


@router.post(
    "/{session_id}/frames",
    status_code=202,
    summary="Push one frame",
    openapi_extra={"requestBody": FRAME_DOC},
    responses=problem_responses(401, 403, 404, 409, 413, 422, 429, 503),
)
async def post_frame(
    session_id: SessionIdPath,
    request: Request,
    state: StateDep,
    principal: SessionsWrite,
    ts: CaptureTime = None,
    pose: PoseHeader = None,
    idempotency_key: FrameKeyHeader = None,
) -> FrameAccepted:
    """Accept one frame (checked magic bytes, size and rate); ``seq`` numbers the session's frames from 1.
    With an ``Idempotency-Key``, a retry of a frame already stored answers that frame's ``seq``."""
    record = await own_session(request, principal, session_id)
    check_kind(principal, record.kind)
    key = frame_key(idempotency_key)
    data, content_type = await read_frame(request, state)
    return await intake_of(request).accept_frame(record, data, content_type, ts, pose_header(pose), key)


class PlainFrameRoute(Route):
    """``POST /v1/sessions/{id}/frames`` with a raw JPEG or PNG body and no query (what a camera loop
    sends), served as :func:`post_frame` serves it (same checks, answers and problems, the same
    middleware) but without FastAPI's route matching and dependency solving, which took more of the
    gateway's time per frame than the frame's own work. Put first among the app's routes; any other
    request to that path (multipart, ``?ts=``, another method) is :func:`post_frame`'s."""

    def __init__(self) -> None:
        super().__init__("/v1/sessions/{session_id}/frames", self.post, methods=["POST"], include_in_schema=False)

    def matches(self, scope: AsgiScope) -> tuple[Match, AsgiScope]:
        match, child = super().matches(scope)
        if match is not Match.FULL or scope.get("query_string"):
            return Match.NONE, {}
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-type"), b"")
        if declared.split(b";", 1)[0].strip().lower().decode("latin-1") not in IMAGE_TYPES:
            return Match.NONE, {}
        return match, child

    @staticmethod
    async def post(request: Request) -> Response:
        state: GatewayState = request.app.state.gateway
        principal = await authenticate(state, bearer_credential(request.headers.get("authorization")))
        principal = check_scope(principal, Scope.SESSIONS_WRITE)
        record = await own_session(request, principal, request.path_params["session_id"])
        check_kind(principal, record.kind)
        key = frame_key(request.headers.get("idempotency-key"))
        data, content_type = await read_frame(request, state)
        pose = pose_header(request.headers.get("gpurelay-pose"))
        accepted = await intake_of(request).accept_frame(record, data, content_type, None, pose, key)
        return Response(accepted.model_dump_json(), 202, media_type="application/json")


async def _control(
    request: Request, state: GatewayState, principal: Principal, session_id: str, action: str
) -> SessionOut:
    intake = intake_of(request)
    record = await own_session(request, principal, session_id, fresh=True)
    check_kind(principal, record.kind)
    await intake.control(record, action)
    return await session_out(state, intake, await intake.record(principal.tenant, session_id), principal)


CONTROL_ERRORS = problem_responses(401, 403, 404, 409, 503)


@router.post("/{session_id}/stop", status_code=202, summary="Finish", responses=CONTROL_ERRORS)
async def stop_session(
    session_id: SessionIdPath, request: Request, state: StateDep, principal: SessionsWrite
) -> SessionOut:
    """The worker finishes what it has (final outputs), then the session succeeds with its result."""
    return await _control(request, state, principal, session_id, "stop")


@router.post("/{session_id}/reset", status_code=202, summary="Reset", responses=CONTROL_ERRORS)
async def reset_session(
    session_id: SessionIdPath, request: Request, state: StateDep, principal: SessionsWrite
) -> SessionOut:
    """The worker clears its model and counters; the session goes on."""
    return await _control(request, state, principal, session_id, "reset")


@router.get(
    "/{session_id}/ply",
    summary="The latest PLY snapshot",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        304: {"description": "Not modified"},
        **problem_responses(401, 403, 404, 409, 410),
    },
)
async def get_ply(
    session_id: SessionIdPath,
    request: Request,
    state: StateDep,
    principal: SessionsRead,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """The latest snapshot's bytes with an ``ETag`` (its sha256); 304 when unchanged; 404 before the first."""
    record = await own_session(request, principal, session_id, fresh=True)
    return await snapshot_response(state, record, if_none_match)


router.add_api_websocket_route("/{session_id}/stream", session_stream, name="session_stream")
internal_router = APIRouter(prefix="/v1/internal/sessions", tags=["internal"])
"""The feed socket of remote session workers."""
internal_router.add_api_websocket_route("/{session_id}/feed", session_feed, name="session_feed")
