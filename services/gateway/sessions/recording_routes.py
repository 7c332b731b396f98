"""``GET /v1/sessions/{id}/recording`` (the manifest) and ``POST /v1/sessions/{id}/replay`` (a new session fed from it).

The recording is what the session's worker wrote under the session's results
(:mod:`contracts.recordings.layout`), read back whole: its frames by reference, their matched
joints, control, results, alerts and snapshots. A replay is a new session of the same kind whose
``source`` is this recording and whose params are this session's with the body's changes; when it
ends its worker stores ``comparison.json`` beside its other artifacts.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import TypeAdapter, ValidationError

from contracts.api.sessions import SessionCreate, SessionOut, SessionReplay
from contracts.recordings.manifest import RecordingManifest
from contracts.specs.jobs import SplatSpec, VlmSpec
from services.common.http.problem import ProblemError, field_error, problem_responses, unprocessable
from services.common.recordings import RecordingUnreadableError, StoredRecording
from services.gateway.deps import SessionsRead, SessionsWrite, StateDep
from services.gateway.jobs.routes import IdempotencyKey
from services.gateway.sessions.routes import SessionIdPath, own_session, submit_session

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
_SPEC: TypeAdapter[SplatSpec | VlmSpec] = TypeAdapter(SessionCreate)


@router.get(
    "/{session_id}/recording",
    summary="A session's recording",
    response_class=Response,
    responses={
        200: {"model": RecordingManifest, "description": "The manifest"},
        **problem_responses(401, 404, 409, 410),
    },
)
async def get_recording(
    session_id: SessionIdPath, request: Request, state: StateDep, principal: SessionsRead
) -> Response:
    """The manifest: every frame (its stored copy's key, capture time, matched joints), control, results,
    alerts, snapshots; as far as the worker wrote it while the session runs. 404 before it has one,
    410 once retention removed it."""
    record = await own_session(request, principal, session_id, fresh=True)
    if record.session is not None and record.session.recording_expired:
        raise ProblemError(410, "The session's recording has expired.")
    stored = StoredRecording(state.storage, state.settings.storage_prefix, record.tenant, record.id)
    try:
        manifest = await stored.manifest()
    except RecordingUnreadableError as exc:
        raise ProblemError(409, f"The session's recording is not readable: {exc}") from exc
    if manifest is None:
        raise ProblemError(404, "The session has no recording yet.")
    return Response(manifest.model_dump_json(exclude_none=True), media_type="application/json")


@router.post(
    "/{session_id}/replay",
    status_code=201,
    summary="Replay a session against other params",
    responses={**problem_responses(401, 404, 409, 410, 422, 429, 503), 200: {"model": SessionOut}},
)
async def replay_session(
    session_id: SessionIdPath,
    body: SessionReplay,
    request: Request,
    state: StateDep,
    principal: SessionsWrite,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> SessionOut:
    """A new session of the same kind fed from this one's recording (its frames, joints and resets), with
    this one's params changed by ``params``; 409 until this one has ended."""
    original = await own_session(request, principal, session_id, fresh=True)
    if not original.terminal:
        raise ProblemError(409, f"The session is {original.session_state}; replay it once it has ended.")
    params = {**original.spec.params.model_dump(mode="json", exclude_none=True), **body.params}
    source = {"session_id": original.id, "speed": body.speed}
    webhook = None if body.webhook is None else body.webhook.model_dump(mode="json")
    try:
        spec = _SPEC.validate_python({"kind": original.kind, "params": params, "source": source, "webhook": webhook})
    except ValidationError as exc:
        errors = [field_error(("body", *e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
        raise unprocessable("The replay's params are not valid for its kind.", *errors) from None
    return await submit_session(request, state, principal, spec, response, idempotency_key)
