"""Cancel: one job (``POST /v1/jobs/{id}/cancel``) or many (``POST /v1/jobs:cancel``, by ids or a filter).

A cancel only publishes ``job.cancel_requested`` with the event id ``cancel-{job_id}``, once (the
stream is checked first), so every form is idempotent: a repeated request answers
``already_requested``. The bulk form is bounded by ``bulk_cancel_max`` (ids beyond it: 422; a filter
that matches more: ``more: true``, send it again) and publishes a bounded number at a time.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from contracts.api.cancel import CancelFilter, CancelOutcome, JobCancelResult, JobsCancelIn, JobsCancelOut
from contracts.api.jobs import JobOut
from contracts.event_ids import cancel_requested_event_id
from contracts.events.jobs import JobCancelRequestedPayload
from contracts.events.registry import EventType, make_event
from contracts.job_record import JobRecord
from contracts.record_repair import UnreadableRecordError
from services.common.auth.apikeys import Principal
from services.common.auth.scoped import kind_refusal
from services.common.http.problem import ProblemError, field_error, problem_responses, unprocessable
from services.gateway.deps import JobsWrite, StateDep
from services.gateway.jobs.listing import get_record, job_ids, records, subject_filter
from services.gateway.jobs.routes import JobIdPath, check_kind, job_out, load_job
from services.gateway.state import GatewayState

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
PUBLISH_PARALLEL = 16


async def _request_cancel(state: GatewayState, record: JobRecord) -> None:
    """Publish ``job.cancel_requested`` of ``record`` unless the stream holds it."""
    event = make_event(
        EventType.JOB_CANCEL_REQUESTED,
        JobCancelRequestedPayload(),
        tenant=record.tenant,
        source="gateway",
        job_id=record.id,
        kind=record.kind,
        event_id=cancel_requested_event_id(record.id),
    )
    await state.publish_once(state.subjects.job_event(record.tenant, record.id, "cancel_requested"), event)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    summary="Request cancellation",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def cancel_job(job_id: JobIdPath, state: StateDep, principal: JobsWrite) -> JobOut:
    """Publish ``job.cancel_requested`` once; idempotent; 409 when the job already ended."""
    record = await load_job(state, principal, job_id)
    check_kind(principal, record.kind)
    if record.terminal:
        raise ProblemError(409, f"The job already ended ({record.status}); it cannot be canceled.")
    await _request_cancel(state, record)
    return await job_out(state, record, principal)


async def _outcome(state: GatewayState, principal: Principal, job_id: str, record: JobRecord | None) -> JobCancelResult:
    if record is None or not principal.sees(record.subject):
        return JobCancelResult(id=job_id, outcome=CancelOutcome.NOT_FOUND)
    if kind_refusal(principal, record.kind) is not None:
        return JobCancelResult(id=job_id, outcome=CancelOutcome.OUTSIDE_SCOPE, status=record.status)
    if record.terminal:
        return JobCancelResult(id=job_id, outcome=CancelOutcome.ENDED, status=record.status)
    if record.cancel_requested:
        return JobCancelResult(id=job_id, outcome=CancelOutcome.ALREADY_REQUESTED, status=record.status)
    await _request_cancel(state, record)
    return JobCancelResult(id=job_id, outcome=CancelOutcome.REQUESTED, status=record.status)


async def _by_id(state: GatewayState, tenant: str, job_id: str) -> JobRecord | None:
    try:
        return await get_record(state, tenant, job_id)
    except UnreadableRecordError:
        return None


async def _matching(state: GatewayState, principal: Principal, wanted: CancelFilter, limit: int) -> list[JobRecord]:
    """Up to ``limit`` of the caller's jobs, newest first, that match ``wanted`` and have not ended or been
    asked to cancel."""
    of_subject = subject_filter(principal, wanted.subject)

    def keep(r: JobRecord) -> bool:
        return (
            of_subject(r)
            and not r.terminal
            and not r.cancel_requested
            and kind_refusal(principal, r.kind) is None
            and (wanted.kind is None or r.kind is wanted.kind)
            and (wanted.status is None or r.status is wanted.status)
            and (wanted.created_before is None or r.created_at < wanted.created_before)
        )

    return await records(state, principal.tenant, await job_ids(state, principal.tenant), keep, limit)


@router.post(
    ":cancel",
    summary="Cancel many jobs",
    response_description="One result per job: requested, already_requested, ended, not_found or outside_scope.",
    responses=problem_responses(401, 403, 422, 503),
)
async def cancel_jobs(body: JobsCancelIn, state: StateDep, principal: JobsWrite) -> JobsCancelOut:
    """Request the cancellation of each job named in ``ids``, or of each job ``filter`` matches (at most
    ``bulk_cancel_max``; ``more`` says more matched); idempotent."""
    limit = state.settings.bulk_cancel_max
    gate = asyncio.Semaphore(PUBLISH_PARALLEL)

    async def bounded(job_id: str, record: JobRecord | None, read: bool = False) -> JobCancelResult:
        async with gate:
            if read:
                record = await _by_id(state, principal.tenant, job_id)
            return await _outcome(state, principal, job_id, record)

    if body.ids is not None:
        if len(body.ids) > limit:
            raise unprocessable("Too many ids.", field_error(("body", "ids"), f"at most {limit} ids per request"))
        ids = list(dict.fromkeys(body.ids))
        results = await asyncio.gather(*(bounded(job_id, None, read=True) for job_id in ids))
        return JobsCancelOut(results=list(results))
    assert body.filter is not None
    matched = await _matching(state, principal, body.filter, limit + 1)
    results = await asyncio.gather(*(bounded(r.id, r) for r in matched[:limit]))
    return JobsCancelOut(results=list(results), more=len(matched) > limit)
