"""The webhooks, robots, sessions and usage pages.

Their lists are read in-process (the API's own functions); creating, deleting, sending frames and
watching live run in the browser against the API with the page's short-lived token.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from contracts.api.usage import GroupBy
from contracts.envelope import utc_now
from contracts.ids import tenant_key_filter
from contracts.job_record import JobRecord
from services.common.http.problem import ProblemError
from services.common.nats.kv import kv_entries
from services.gateway.dashboard.pages import ViewerDep
from services.gateway.dashboard.render import page
from services.gateway.dashboard.settle import record_when
from services.gateway.deps import StateDep
from services.gateway.sessions.http import snapshot_response
from services.gateway.usage.routes import get_usage
from services.gateway.webhooks.routes import list_webhooks

router = APIRouter()
MAX_ROBOTS = 50


@router.get("/webhooks")
async def webhooks_page(request: Request, state: StateDep, viewer: ViewerDep) -> HTMLResponse:
    """The tenant's endpoints; create (secret shown once), delete, deliveries and dead letters."""
    endpoints = (await list_webhooks(viewer.principal, state)).data
    return page(request, "webhooks.html", viewer, endpoints=endpoints)


@router.get("/webhooks/list")
async def webhooks_list(request: Request, state: StateDep, viewer: ViewerDep) -> HTMLResponse:
    """The endpoints' table alone (refreshed after a change)."""
    endpoints = (await list_webhooks(viewer.principal, state)).data
    return page(request, "webhook_rows.html", viewer, endpoints=endpoints)


@router.get("/robots")
async def robots_page(request: Request, state: StateDep, viewer: ViewerDep) -> HTMLResponse:
    """The tenant's robots (those with joint angles); the chosen one's latest joints, live."""
    entries = await kv_entries(state.kv.robots, tenant_key_filter(viewer.tenant), meta_only=True)
    robots = sorted({e.key.partition(".")[2] for e in entries})[:MAX_ROBOTS]
    return page(request, "robots.html", viewer, robots=robots)


@router.get("/usage")
async def usage_page(
    request: Request, state: StateDep, viewer: ViewerDep, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> HTMLResponse:
    """GPU-seconds and cost per day (a chart and a table), per kind, and the quotas with today's use."""
    today = utc_now().astimezone(UTC).date()
    start = datetime.combine(today - timedelta(days=days - 1), time.min, UTC)
    by_day = await get_usage(state, viewer.principal, from_=start, to=None, group_by=GroupBy.DAY, subject=None)
    by_kind = await get_usage(state, viewer.principal, from_=start, to=None, group_by=GroupBy.KIND, subject=None)
    known = {g.key: g for g in by_day.groups}
    series = [(d := (start.date() + timedelta(days=i)).isoformat(), known.get(d)) for i in range(days)]
    chart = {
        "days": [d for d, _ in series],
        "gpu_seconds": [g.gpu_seconds if g else 0.0 for _, g in series],
        "cost_usd": [g.cost_usd if g else 0.0 for _, g in series],
    }
    return page(request, "usage.html", viewer, usage=by_day, kinds=by_kind, chart=chart, days=days)


@router.get("/sessions")
async def sessions_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    """Start a splat or vlm session, feed it frames, watch its results and its 3D view."""
    return page(request, "sessions.html", viewer)


def holds_snapshot(record: JobRecord, sha256: str, seq: int | None) -> bool:
    """Whether ``record`` holds the snapshot announced as ``sha256`` (covering frames up to ``seq``), or
    one at least as far along: a later snapshot replaces it in the record (and in storage) while the
    page fetches it, and the wait would otherwise last until the session's end. A record one snapshot
    behind at the same ``seq`` serves the one before, which the page already had."""
    session = record.session
    if session is None or session.snapshot is None:
        return False
    return session.snapshot.sha256 == sha256 or record.terminal or (seq is not None and session.snapshot_seq >= seq)


@router.get("/sessions/{session_id}/snapshot")
async def session_snapshot(
    state: StateDep,
    viewer: ViewerDep,
    session_id: str,
    sha256: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")],
    seq: Annotated[int | None, Query(ge=0, description="The last frame the announced snapshot covers.")] = None,
) -> Response:
    """The snapshot a ``session.snapshot`` event announced (its ``sha256`` and ``seq``), once the session's
    record holds it (or a newer one: :func:`holds_snapshot`); as ``GET /v1/sessions/{id}/ply`` answers,
    404 for another tenant's."""

    def announced(record: JobRecord) -> bool:
        return holds_snapshot(record, sha256, seq)

    record = await record_when(state, viewer.tenant, session_id, announced)
    if record is None:
        raise ProblemError(404, f"No snapshot {sha256[:12]}… of session {session_id!r}.")
    try:
        return await snapshot_response(state, record, None)
    except ProblemError as exc:  # its bytes were replaced before the record moved on: the newer one
        if exc.status != 404:
            raise
    newer = await record_when(state, viewer.tenant, session_id, lambda r: not announced(r) or r.terminal)
    if newer is None:
        raise ProblemError(404, f"Snapshot {sha256[:12]}… of session {session_id!r} was replaced; ask again.")
    return await snapshot_response(state, newer, None)
