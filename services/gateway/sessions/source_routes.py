"""``/v1/internal/sessions/{id}/source``: a Modal worker's feeder publishes its sourced session's input here.

A session created with a ``source`` is fed by its own worker; one that cannot reach NATS posts each
frame (the body, ``?seq=&ts=``), joint sample and control here with its job-scoped ingest token
(the token's job must be the session: 403 otherwise), and the gateway publishes it with
:class:`~services.common.session_publish.NatsSourcePublisher`, as a local worker's feeder does. A
session without a source takes nothing here (409): its frames are the clients'.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import nats.errors
from fastapi import APIRouter, Depends, Header, Query, Request

from contracts.api.sessions import SessionEntry
from contracts.session_feed import SourceControl, SourceJoints, SourcePublished
from services.common.auth.ingest_tokens import IngestClaims
from services.common.http.auth import forbidden
from services.common.http.problem import ProblemError, problem_responses
from services.common.session_publish import NatsSourcePublisher
from services.gateway.deps import StateDep
from services.gateway.ingest.routes import ingest_claims
from services.gateway.sessions.http import intake_of, pose_header, read_frame

router = APIRouter(prefix="/v1/internal/sessions", tags=["internal"])
Claims = Annotated[IngestClaims, Depends(ingest_claims)]
ERRORS = problem_responses(401, 403, 404, 409, 413, 422, 503)


async def _publisher(request: Request, state: StateDep, claims: Claims, session_id: str) -> NatsSourcePublisher:
    """The publisher of the token's own sourced session."""
    if claims.job_id != session_id:
        raise forbidden("The ingest token is not this session's.")
    record = await intake_of(request).record(claims.tenant, session_id)
    if getattr(record.spec, "source", None) is None:
        raise ProblemError(409, "The session has no source: its frames are its clients'.")
    entry = SessionEntry(
        id=record.id, tenant=record.tenant, kind="splat" if record.kind == "splat" else "vlm", robot_id=record.id,
        created_at=record.created_at,
    )  # fmt: skip
    return NatsSourcePublisher(state.js, state.kv.sessions, state.settings.ns, entry, "gateway")


Publisher = Annotated[NatsSourcePublisher, Depends(_publisher)]


@contextlib.asynccontextmanager
async def _published() -> AsyncIterator[None]:
    """NATS refusing or not answering is a 503 the feeder retries."""
    try:
        yield
    except (nats.errors.Error, TimeoutError) as exc:
        raise ProblemError(
            503, f"NATS did not take it ({type(exc).__name__}); retry.", headers={"Retry-After": "1"}
        ) from exc


@router.get("/{session_id}/source", responses=ERRORS, summary="How far a sourced session's feeder got")
async def source_published(publisher: Publisher) -> SourcePublished:
    """The last frame seq published for the session."""
    async with _published():
        return SourcePublished(published=await publisher.published())


@router.post("/{session_id}/source/frames", status_code=204, responses=ERRORS, summary="A sourced session's frame")
async def source_frame(
    request: Request,
    state: StateDep,
    publisher: Publisher,
    seq: Annotated[int, Query(ge=1, le=10_000_000)],
    ts: Annotated[float, Query(ge=0, le=1e11, allow_inf_nan=False)],
    pose: Annotated[str | None, Header(alias="Gpurelay-Pose")] = None,
) -> None:
    """Publish frame ``seq`` (a JPEG or PNG body, checked and bounded as a client's frame is)."""
    data, content_type = await read_frame(request, state)
    async with _published():
        await publisher.frame(seq, ts, content_type, data, pose_header(pose))


@router.post("/{session_id}/source/joints", status_code=204, responses=ERRORS, summary="A sourced session's sample")
async def source_joints(body: SourceJoints, publisher: Publisher) -> None:
    """Publish a joint sample of the session's own robot."""
    async with _published():
        await publisher.joints(body.ts, body.joint_angles)


@router.post("/{session_id}/source/control", status_code=204, responses=ERRORS, summary="A sourced session's control")
async def source_control(body: SourceControl, publisher: Publisher) -> None:
    """Publish a reset or the stop."""
    async with _published():
        await publisher.control(body.action, body.reason, body.nonce)
