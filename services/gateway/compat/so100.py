"""``/compat/so100/{token}/…``: the live-splat seed's seven routes, with its shapes, for one splat session.

``urls.compat`` of a splat session is this capability URL: the token (audience ``compat``) names the
tenant and the session, so the seed's React app (``VITE_API_URL``) and its LeRobot snippet
(``YOUR_BACKEND_URL``) run unchanged. No other auth; a bad token is a 404. CORS comes from the
allowlist setting, as for every route.

- ``POST /upload-frame`` (multipart ``file``) → ``{success, frame_count, chunks_uploaded}``
- ``POST /update-joint-angles`` ``{"joint_angles": [6 radians]}`` → ``{success, joint_angles}`` (the
  session's robot)
- ``GET /status`` → ``{frame_count, gaussian_count, chunks_uploaded, progress}`` (the worker's progress
  metrics ``gaussians`` and ``chunks``; frames counted since its last reset, ``reset_seq``)
- ``GET /get-ply`` → the latest PLY
- ``POST /stop-training`` → ``{success, chunks, complete}`` (waits up to ``session_stop_wait_s`` for
  the final chunks; ``complete`` says whether they came)
- ``POST /reset`` → ``{success}``; ``GET /health`` → ``{status, trainer_ready}``

After the session ends the read routes keep answering (until the token or the results expire) and
the write routes answer 409 ``{success: false, error}`` (``/stop-training`` of a session that
succeeded repeats its answer, as a repeated stop); every error carries ``success: false`` and
``error`` beside the problem+json fields. A frame or a joint sample within ``session_record_cache_s``
of an end decided elsewhere may still be taken, as on the native frame route."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.api.robots import JointAngles, JointSampleIn
from contracts.base import Contract
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from services.common.auth.tokens import TokenExpiredError, TokenInvalidError, verify_token
from services.common.http.problem import ProblemError, field_error, problem_responses, unprocessable
from services.common.nats.kv_watch import latest_record
from services.gateway.robots.routes import publish_samples, telemetry_of
from services.gateway.sessions.http import intake_of, read_frame, snapshot_response
from services.gateway.sessions.intake import SessionIntake

router = APIRouter(prefix="/compat/so100/{token}", tags=["compat"], responses=problem_responses(404, 503))
Token = Annotated[str, Path(max_length=1024, description="The session's capability token (urls.compat).")]


class JointAnglesBody(Contract):
    """The seed's ``{"joint_angles": [...]}``, in radians."""

    model_config = ConfigDict(extra="ignore")

    joint_angles: JointAngles


class CompatFailure(ProblemError):
    """A problem that also carries the seed's ``{success: false, error}``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail, success=False, error=detail)


async def _session(request: Request, token: str, *, fresh: bool = True) -> tuple[SessionIntake, JobRecord]:
    """The token's splat session; 404 for a bad token. Its record is read afresh, but for the routes a
    robot loop calls at its own rate (a frame, a joint sample), which take it as the native frame route
    does: reused for ``session_record_cache_s`` (one KV read a second, not one a request)."""
    secret = request.app.state.settings.signing_secret.get_secret_value().encode()
    try:
        claims = verify_token(secret, token, "compat")
    except (TokenInvalidError, TokenExpiredError):
        raise CompatFailure(404, "No such session.") from None
    tenant, session_id = claims.get("tenant"), claims.get("session")
    if not isinstance(tenant, str) or not isinstance(session_id, str):
        raise CompatFailure(404, "No such session.")
    intake = intake_of(request)
    return intake, await intake.record(tenant, session_id, fresh=fresh)


def _writable(record: JobRecord) -> None:
    if record.terminal or (record.session is not None and record.session.stop_requested):
        raise CompatFailure(409, f"The session has ended ({record.status}).")


def _chunks(record: JobRecord) -> list[str]:
    """The chunk PLYs written so far (artifacts named ``chunks/…``), in order."""
    return sorted(a.name for a in record.artifacts if a.name.startswith("chunks/"))


def _frame_count(frames: int, record: JobRecord) -> int:
    """Frames since the worker's last reset (it reports the seq it reset at as ``reset_seq``): the seed's
    reset clears the count."""
    reset_seq = record.progress.metrics.get("reset_seq", 0)
    return max(0, frames - reset_seq) if isinstance(reset_seq, int) else frames


def _figures(record: JobRecord) -> dict[str, Any]:
    metrics = record.progress.metrics
    return {
        "gaussian_count": int(metrics.get("gaussians", 0)),
        "chunks_uploaded": max(int(metrics.get("chunks", 0)), len(_chunks(record))),
        "progress": record.progress.fraction,
    }


@router.post("/upload-frame", summary="Seed: upload one frame", responses=problem_responses(409, 413, 422, 429))
async def upload_frame(token: Token, request: Request) -> dict[str, Any]:
    """A frame (multipart ``file``) → ``{success, frame_count, chunks_uploaded}``."""
    intake, record = await _session(request, token, fresh=False)
    _writable(intake.current(record))
    data, content_type = await read_frame(request, intake.state)
    accepted = await intake.accept_frame(record, data, content_type, None, None)
    chunks = _figures(record)["chunks_uploaded"]
    return {"success": True, "frame_count": _frame_count(accepted.frame_count, record), "chunks_uploaded": chunks}


@router.post("/update-joint-angles", summary="Seed: the robot's joint angles", responses=problem_responses(409, 422))
async def update_joint_angles(token: Token, request: Request) -> dict[str, Any]:
    """``{"joint_angles": [radians]}`` → ``{success, joint_angles}``; they go to the session's robot."""
    intake, record = await _session(request, token, fresh=False)
    _writable(intake.current(record))
    try:
        body = JointAnglesBody.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = [field_error(("body", *e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
        raise unprocessable("The joint angles are not valid.", *errors[:20]) from None
    telemetry = telemetry_of(request)
    count = telemetry.settings.robot_joint_count
    if len(body.joint_angles) != count:
        raise unprocessable("Wrong number of joint angles.", field_error(("body", "joint_angles"), f"expected {count}"))
    robot = record.session.robot_id if record.session and record.session.robot_id else record.id
    sample = JointSampleIn(joint_angles=body.joint_angles)
    await publish_samples(telemetry, record.tenant, robot, [sample], confirm=False)
    return {"success": True, "joint_angles": body.joint_angles}


@router.get("/status", summary="Seed: status")
async def status(token: Token, request: Request) -> dict[str, Any]:
    """``{frame_count, gaussian_count, chunks_uploaded, progress}``."""
    intake, record = await _session(request, token)
    return {"frame_count": _frame_count(await intake.frames_received(record), record), **_figures(record)}


@router.get(
    "/get-ply",
    summary="Seed: the live PLY",
    response_class=Response,
    responses={**problem_responses(410), 304: {"description": "Unchanged since If-None-Match."}},
)
async def get_ply(token: Token, request: Request) -> Response:
    """The latest PLY snapshot's bytes."""
    intake, record = await _session(request, token)
    try:
        return await snapshot_response(intake.state, record, request.headers.get("if-none-match"))
    except ProblemError as exc:
        raise CompatFailure(exc.status, exc.detail) from None


@router.post("/stop-training", summary="Seed: stop", responses=problem_responses(409))
async def stop_training(token: Token, request: Request) -> dict[str, Any]:
    """Stop, wait (bounded) for the final chunks → ``{success, chunks, complete}``.

    A stop of a session that already finished (stopped, or idle) repeats its answer; one that
    failed or was canceled answers 409 ``{success: false, error}``."""
    intake, record = await _session(request, token)
    if record.terminal and record.status != JobStatus.SUCCEEDED:
        raise CompatFailure(409, f"The session has ended ({record.status}).")
    if not record.terminal:
        if record.session is not None and not record.session.stop_requested:
            await intake.control(record, "stop")
        record = await _settled(intake, record, intake.settings.session_stop_wait_s)
    return {"success": True, "chunks": _chunks(record), "complete": record.terminal}


async def _settled(intake: SessionIntake, record: JobRecord, timeout_s: float) -> JobRecord:
    """The record once terminal (a KV watch), or as it is after ``timeout_s``."""
    settled = await latest_record(intake.state.kv.jobs, record.tenant, record.id, lambda r: r.terminal, timeout_s)
    return settled or record


@router.post("/reset", summary="Seed: reset", responses=problem_responses(409))
async def reset(token: Token, request: Request) -> dict[str, Any]:
    """Clear the model and counters → ``{success}``."""
    intake, record = await _session(request, token)
    _writable(record)
    await intake.control(record, "reset")
    return {"success": True}


class Health(BaseModel):
    """``GET /health``."""

    status: str = Field(description="healthy")
    trainer_ready: bool = Field(description="Whether the session's worker is live.")


@router.get("/health", summary="Seed: health")
async def health(token: Token, request: Request) -> Health:
    """``{status, trainer_ready}``: ready once the session's worker runs."""
    _, record = await _session(request, token)
    return Health(status="healthy", trainer_ready=str(record.session_state) == "live")
