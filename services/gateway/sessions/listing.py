"""``GET /v1/sessions``: the caller's live sessions, newest first, filtered, one page at a time (a session
is a job of a session kind, so this is the jobs list over those kinds, in the session's own view)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from contracts.api.sessions import SessionList
from contracts.ids import SubjectId
from contracts.job_parts import JobStatus, SessionState
from contracts.job_record import JobRecord
from contracts.specs.jobs import SESSION_KINDS, JobKind
from services.common.http.problem import problem_responses
from services.gateway.deps import JobsRead, StateDep
from services.gateway.jobs.listing import record_page, subject_filter
from services.gateway.sessions.http import intake_of
from services.gateway.sessions.view import session_out

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


@router.get("", summary="List sessions", responses=problem_responses(401, 403, 422))
async def list_sessions(
    request: Request,
    state: StateDep,
    principal: JobsRead,
    status: Annotated[JobStatus | None, Query(description="Only sessions whose job is in this status.")] = None,
    session_state: Annotated[
        SessionState | None, Query(alias="state", description="Only sessions in this state (starting, live, ...).")
    ] = None,
    kind: Annotated[JobKind | None, Query(description="Only sessions of this kind (splat, vlm).")] = None,
    robot_id: Annotated[str | None, Query(max_length=64, description="Only sessions bound to this robot.")] = None,
    subject: Annotated[SubjectId | None, Query(description="Only sessions of this end user.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> SessionList:
    """This tenant's sessions (a subject's token: its subject's), newest first; a record that is not valid
    is left out."""
    of_subject = subject_filter(principal, subject)

    def keep(r: JobRecord) -> bool:
        return (
            r.kind in SESSION_KINDS
            and r.session is not None
            and of_subject(r)
            and (status is None or r.status is status)
            and (session_state is None or r.session_state is session_state)
            and (kind is None or r.kind is kind)
            and (robot_id is None or r.session.robot_id == robot_id)
        )

    page, next_cursor = await record_page(state, principal.tenant, cursor, limit, keep)
    intake = intake_of(request)
    return SessionList(items=[await session_out(state, intake, r, principal) for r in page], next_cursor=next_cursor)
