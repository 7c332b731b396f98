"""One session's page: its state and counts, where its frames came from, its recording, export and replay,
and, for a replay, the comparison with the session it replayed.

Read in-process through the API's own functions (the session view, the recording's head, the
replay's ``comparison.json`` from storage); exporting and replaying go from the browser to the API
with the page's token. The panel reloads when the session's SSE stream brings its end (after the
record folded it, as a job's panel does).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from contracts.api.sessions import SessionOut
from contracts.recordings.comparison import SessionComparison
from services.common.auth.apikeys import Principal
from services.common.recordings import RecordingUnreadableError, StoredRecording
from services.common.storage import ObjectNotFoundError
from services.gateway.dashboard.pages import ViewerDep
from services.gateway.dashboard.render import or_error_page, page
from services.gateway.dashboard.settle import record_when
from services.gateway.deps import StateDep
from services.gateway.sessions.http import intake_of
from services.gateway.sessions.view import session_out
from services.gateway.state import GatewayState

log = logging.getLogger(__name__)
router = APIRouter()
COMPARISON = "comparison.json"
FIGURES = (
    ("frames", "Frames taken", "{:d}"),
    ("frames_per_s", "Frames per second", "{:.2f}"),
    ("time_to_first_snapshot_s", "Time to the first snapshot (s)", "{:.2f}"),
    ("snapshots", "Snapshots kept", "{:d}"),
    ("gaussians", "Gaussians", "{:d}"),
    ("psnr", "PSNR on the evaluation frames (dB)", "{:.2f}"),
    ("results", "Results", "{:d}"),
    ("latency_ms_p50", "Latency p50 (ms)", "{:.1f}"),
    ("latency_ms_p99", "Latency p99 (ms)", "{:.1f}"),
    ("alerts", "Alerts fired", "{:d}"),
)
"""The comparison's rows: field, label, format (a row is shown when either run has the figure)."""


def figure_rows(comparison: SessionComparison) -> list[tuple[str, str, str, str]]:
    """``(field, label, original, replay)`` of each figure either run has."""
    rows = []
    for name, label, fmt in FIGURES:
        values = [getattr(comparison.original, name), getattr(comparison.replay, name)]
        if any(v is not None for v in values):
            shown = ["–" if v is None else fmt.format(v) for v in values]
            rows.append((name, label, shown[0], shown[1]))
    return rows


async def _comparison(state: GatewayState, session: SessionOut, artifacts: list[Any]) -> SessionComparison | None:
    found = next((a for a in artifacts if a.name == COMPARISON and not a.expired), None)
    if found is None:
        return None
    try:
        return SessionComparison.model_validate_json(await state.storage.read_all(found.key))
    except (ObjectNotFoundError, ValidationError):
        log.warning("session %s: its comparison.json is gone or not valid", session.id)
        return None


async def _context(request: Request, state: GatewayState, viewer: Principal, session_id: str) -> dict[str, Any]:
    tenant = viewer.tenant
    intake = intake_of(request)
    record = await intake.record(tenant, session_id, fresh=True)
    session = await session_out(state, intake, record, viewer)
    try:
        head = await StoredRecording(state.storage, state.settings.storage_prefix, tenant, record.id).head()
    except RecordingUnreadableError:
        head = None
    comparison = await _comparison(state, session, list(record.artifacts))
    return {
        "session": session, "head": head, "comparison": comparison,
        "rows": figure_rows(comparison) if comparison is not None else [],
        "source": session.spec.source, "terminal": record.terminal,
    }  # fmt: skip


async def _page(request: Request, state: GatewayState, viewer: Any, session_id: str, template: str) -> HTMLResponse:
    loading = _context(request, state, viewer.principal, session_id)
    context = await or_error_page(request, viewer, f"session {session_id!r}", loading)
    return context if isinstance(context, HTMLResponse) else page(request, template, viewer, **context)


@router.get("/sessions/{session_id}")
async def session_page(request: Request, state: StateDep, viewer: ViewerDep, session_id: str) -> HTMLResponse:
    """One session: state, counts, source, recording, export and replay, a replay's comparison."""
    return await _page(request, state, viewer, session_id, "session.html")


@router.get("/sessions/{session_id}/panel")
async def session_panel(
    request: Request, state: StateDep, viewer: ViewerDep, session_id: str, settle: bool = False
) -> HTMLResponse:
    """The page's panel alone; with ``settle``, once the record is terminal (its end seen on SSE)."""
    if settle:
        await record_when(state, viewer.tenant, session_id, lambda record: record.terminal)
    return await _page(request, state, viewer, session_id, "session_panel.html")
