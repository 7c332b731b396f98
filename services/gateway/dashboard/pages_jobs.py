"""The jobs pages: the list (live through the tenant's SSE feed), a new job, one job and its results.

Every read goes through the API's own route functions (:mod:`services.gateway.jobs.routes`), called
in-process with the viewer's principal: the same tenancy, the same fresh download URLs, no HTTP to
itself. Another tenant's job, like one that never existed, is the 404 page.
"""

from __future__ import annotations

from typing import Annotated, Any

import nats.errors
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from contracts import streams
from contracts.api.jobs import JobOut
from contracts.job_parts import JobStatus
from contracts.specs.jobs import JobKind
from services.common.http.problem import ProblemError
from services.gateway.dashboard.auth import Viewer
from services.gateway.dashboard.forms import input_fields, job_kinds, param_fields, price_text
from services.gateway.dashboard.pages import ViewerDep
from services.gateway.dashboard.render import error_page, or_error_page, page
from services.gateway.dashboard.results import on_this_origin, results_view
from services.gateway.dashboard.settle import record_when
from services.gateway.deps import StateDep
from services.gateway.jobs.routes import get_job, list_jobs
from services.gateway.kinds.routes import list_kinds
from services.gateway.state import GatewayState

router = APIRouter()
PAGE_SIZE = 50
LIVE_TYPES = "job.created,job.started,job.progress,job.succeeded,job.failed,job.canceled,job.retrying"
TERMINAL = {"succeeded", "failed", "canceled"}


def _choice(value: str | None, allowed: type[JobStatus] | type[JobKind]) -> str | None:
    """``value`` when it names a member of ``allowed``; an unknown filter shows every job."""
    return value if value and value in {m.value for m in allowed} else None


async def _jobs(
    state: GatewayState, viewer: Viewer, status: str | None, kind: str | None, cursor: str | None
) -> dict[str, Any]:
    chosen_status, chosen_kind = _choice(status, JobStatus), _choice(kind, JobKind)
    try:
        listing = await list_jobs(
            state,
            viewer.principal,
            status=JobStatus(chosen_status) if chosen_status else None,
            kind=JobKind(chosen_kind) if chosen_kind else None,
            created_after=None,
            created_before=None,
            limit=PAGE_SIZE,
            cursor=cursor,
        )
    except ProblemError:  # a stale cursor: start again from the newest
        return await _jobs(state, viewer, status, kind, None)
    return {"jobs": listing.items, "next_cursor": listing.next_cursor, "status": chosen_status, "kind": chosen_kind}


async def _feed_start(state: GatewayState) -> int:
    """The JOBS stream's last sequence: the list's feed starts after it (what the page shows is newer
    than anything before), so opening the list never replays the tenant's history."""
    try:
        info = await state.js.stream_info(state.settings.ns.stream(streams.JOBS))
    except (nats.errors.Error, TimeoutError):
        return 0  # the feed then replays; the list still renders
    return int(info.state.last_seq or 0)


@router.get("/jobs")
async def jobs_page(
    request: Request,
    state: StateDep,
    viewer: ViewerDep,
    status: Annotated[str | None, Query(max_length=32)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """This tenant's jobs, newest first, filtered by status and kind; the rows refresh on each event."""
    listing = await _jobs(state, viewer, status, kind, cursor)
    return page(
        request,
        "jobs.html",
        viewer,
        statuses=[s.value for s in JobStatus],
        kinds=[k.value for k in JobKind],
        live_types=LIVE_TYPES,
        feed_after=await _feed_start(state),
        **listing,
    )


@router.get("/jobs/rows")
async def job_rows(
    request: Request,
    state: StateDep,
    viewer: ViewerDep,
    status: Annotated[str | None, Query(max_length=32)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    """The list's table body alone (what htmx swaps in when the feed says something changed)."""
    return page(request, "job_rows.html", viewer, **await _jobs(state, viewer, status, kind, None))


@router.get("/jobs/new")
async def new_job_page(
    request: Request, state: StateDep, viewer: ViewerDep, kind: Annotated[str | None, Query(max_length=32)] = None
) -> HTMLResponse:
    """The new-job form of ``kind`` (the first job kind by default), from what ``GET /v1/kinds`` says."""
    catalog = {str(k.kind): k for k in (await list_kinds(state, viewer.principal)).items}
    kinds = job_kinds(list(catalog.values()))
    if not kinds:
        return error_page(request, viewer, 404, "No job kinds", "This deployment routes no job kind.")
    chosen = catalog[kind if kind in kinds else kinds[0]]
    template = "new_job_fields.html" if request.headers.get("hx-request") else "new_job.html"
    params, inputs = param_fields(chosen), input_fields(chosen)
    return page(
        request, template, viewer, kinds=kinds, kind=str(chosen.kind), params=params, inputs=inputs,
        price=price_text(chosen), summary=chosen.summary,
    )  # fmt: skip


async def _job(request: Request, state: StateDep, viewer: ViewerDep, job_id: str) -> JobOut | HTMLResponse:
    """The job as its page shows it (its URLs on the gateway's origin as paths), or the error page."""
    job = await or_error_page(request, viewer, f"job {job_id!r}", get_job(job_id, state, viewer.principal))
    return job if isinstance(job, HTMLResponse) else on_this_origin(job, state.settings.url)


@router.get("/jobs/{job_id}")
async def job_page(request: Request, state: StateDep, viewer: ViewerDep, job_id: str) -> HTMLResponse:
    """One job: live progress, stage, events, cancel, error, attempts, cost, artifacts, results."""
    job = await _job(request, state, viewer, job_id)
    if isinstance(job, HTMLResponse):
        return job
    return page(request, "job.html", viewer, job=job, terminal=job.status.value in TERMINAL, view=results_view(job))


@router.get("/jobs/{job_id}/panel")
async def job_panel(
    request: Request, state: StateDep, viewer: ViewerDep, job_id: str, settle: bool = False
) -> HTMLResponse:
    """The job's details, artifacts and results alone; with ``settle``, once the record is terminal
    (the page asks when SSE brought the terminal event, which the record folds a moment later)."""
    if settle:
        await record_when(state, viewer.tenant, job_id, lambda record: record.terminal)
    job = await _job(request, state, viewer, job_id)
    if isinstance(job, HTMLResponse):
        return job
    terminal = job.status.value in TERMINAL
    return page(request, "job_panel.html", viewer, job=job, terminal=terminal, view=results_view(job))
