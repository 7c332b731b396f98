"""``POST /v1/jobs:batch``: submit up to 1,000 specs at once, each exactly as ``POST /v1/jobs`` would
(its own validation, quotas and ``Idempotency-Key``), with one result per item: a bad item fails
alone. Items run a bounded number at a time (``BATCH_PARALLEL``), results in request order."""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter
from pydantic import TypeAdapter, ValidationError

from contracts.api.batch import JobBatchIn, JobBatchItem, JobBatchOut, JobBatchResult
from contracts.api.jobs import JobCreate
from contracts.specs.jobs import JobSpec
from services.common.auth.apikeys import Principal
from services.common.http.problem import ProblemError, problem_responses
from services.gateway.deps import JobsWrite, StateDep
from services.gateway.jobs.routes import job_out, submit_job
from services.gateway.state import GatewayState

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
BATCH_PARALLEL = 16
_SPEC: TypeAdapter[Any] = TypeAdapter(JobCreate)


def _problem(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    return body | extra


def _parse(index: int, item: JobBatchItem) -> JobSpec:
    try:
        spec: JobSpec = _SPEC.validate_python(item.spec)
    except ValidationError as exc:
        errors = [{"loc": ["body", "jobs", index, "spec", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                  for e in exc.errors()]  # fmt: skip
        raise ProblemError(422, "The job's spec is not valid.", title="Validation failed", errors=errors) from None
    if spec.is_session:
        raise ProblemError(422, f"{spec.kind} runs as a live session: start it with POST /v1/sessions.")
    return spec


async def _one(state: GatewayState, owner: Principal, index: int, item: JobBatchItem) -> JobBatchResult:
    try:
        record, claimed = await submit_job(state, owner, _parse(index, item), item.idempotency_key)
    except ProblemError as exc:
        title = {"title": exc.title} if exc.title else {}
        body = _problem(exc.status, exc.detail, **title, **exc.extra)
        return JobBatchResult(index=index, status=exc.status, problem=body)
    return JobBatchResult(index=index, status=201 if claimed else 200, job=await job_out(state, record, owner))


@router.post(
    ":batch",
    summary="Submit up to 1,000 jobs",
    response_description="One result per item, in order: 201, 200 (a replayed Idempotency-Key) or a problem.",
    responses=problem_responses(401, 403, 422, 503),
)
async def create_jobs(batch: JobBatchIn, state: StateDep, principal: JobsWrite) -> JobBatchOut:
    """Submit every item as ``POST /v1/jobs`` would; an item's failure is its own result, not the batch's."""
    gate = asyncio.Semaphore(BATCH_PARALLEL)

    async def bounded(index: int, item: JobBatchItem) -> JobBatchResult:
        async with gate:
            return await _one(state, principal, index, item)

    results = await asyncio.gather(*(bounded(i, item) for i, item in enumerate(batch.jobs)))
    return JobBatchOut(results=list(results))
