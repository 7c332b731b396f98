"""``/v1/jobs``: submit, read and list jobs (cancel: :mod:`services.gateway.jobs.cancel`).

The gateway writes a job's first record with a KV create (so a GET right after the POST finds it)
and publishes ``job.created`` with the event id ``created-{job_id}``; from then on the dispatcher is
the record's only writer. Cancel only publishes ``job.cancel_requested`` (``cancel-{job_id}``).

``Idempotency-Key``: KV ``idempotency`` maps ``sha256(tenant + "\\n" + key)`` to the job id and the
digest of the validated spec, claimed with a KV create, so of two concurrent identical requests one
creates the job and the other answers it. A replay also finishes a creation that crashed halfway
(record or event missing), and publishes only what the stream lacks.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from pydantic import AwareDatetime

from contracts.api.jobs import IdempotencyClaim, JobCreate, JobList, JobOut, JobUrls
from contracts.envelope import utc_now
from contracts.events.registry import CREATED_RECORD_REVISION, job_created_event
from contracts.ids import IDEMPOTENCY_KEY_CHARS, IDEMPOTENCY_KEY_MAX, SubjectId, new_id, tenant_key
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.specs.jobs import JobKind, JobSpec
from services.common.auth.apikeys import Principal
from services.common.auth.scoped import kind_refusal
from services.common.http.auth import narrowed
from services.common.http.problem import (
    UNAVAILABLE_RETRY_AFTER_S,
    ProblemError,
    field_error,
    problem_responses,
    unprocessable,
)
from services.common.nats.kv_writes import kv_create
from services.common.observability.metrics import JOBS_CREATED
from services.gateway.deps import JobsRead, JobsWrite, StateDep
from services.gateway.jobs.artifacts import events_token, signed_artifacts
from services.gateway.jobs.listing import get_record, record_page, subject_filter
from services.gateway.sessions.sources import check_recording_refs
from services.gateway.state import GatewayState
from services.gateway.uploads.inputs import upload_input_problem

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JobIdPath = Annotated[str, Path(description="A job id, e.g. job_0193...")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=IDEMPOTENCY_KEY_CHARS,
        description="Retry-safe submission: the same key and body answer the same job for 24 h.",
    ),
]


async def load_job(state: GatewayState, viewer: Principal, job_id: str) -> JobRecord:
    """The caller's job record; 404 for any other id (another tenant's, or another subject's for a
    subject-bound token)."""
    return seen_by(viewer, job_id, await get_record(state, viewer.tenant, job_id))


def seen_by(viewer: Principal, job_id: str, record: JobRecord | None) -> JobRecord:
    """``record`` if it is the caller's; 404 otherwise (none, or another subject's)."""
    if record is None or not viewer.sees(record.subject):
        raise ProblemError(404, f"No job {job_id!r}.")
    return record


def check_kind(principal: Principal, kind: str) -> None:
    """403 when the token's ``kinds`` leave ``kind`` out."""
    if (refusal := kind_refusal(principal, kind)) is not None:
        raise narrowed(refusal)


async def job_out(state: GatewayState, record: JobRecord, viewer: Principal) -> JobOut:
    """The client's view: download URLs for live artifacts under the job's own results, the job's URLs
    (``events`` with a stream token minted for ``viewer``)."""
    artifacts = await signed_artifacts(state, record)
    token = events_token(state, record, viewer)
    base = f"{state.settings.url}/v1/jobs/{record.id}"
    urls = JobUrls(self=base, events=f"{base}/events?token={token}", cancel=f"{base}/cancel")
    fields = set(JobOut.model_fields) - {"artifacts", "urls"}
    return JobOut.model_validate({**record.model_dump(include=fields), "artifacts": artifacts, "urls": urls})


async def _check_inputs(state: GatewayState, owner: Principal, spec: JobSpec) -> dict[str, int]:
    """422 naming each input that is a URL (unless allowed), an upload this tenant does not have, or a
    completed upload whose file is no longer the one verified at completion; then the recording or
    source the spec names (:func:`~services.gateway.sessions.sources.check_recording_refs`). The sizes
    of the uploads found complete (``job.created`` carries them: the dispatcher need not read them)."""
    errors, complete = [], dict[str, int]()
    for name, ref in spec.inputs.refs().items():
        if ref.url is not None and not state.settings.allow_url_inputs:
            msg = "url inputs are disabled here; upload the file and pass {'upload_id': ...}"
            errors.append(field_error(("body", "inputs", name, "url"), msg))
        if ref.upload_id is not None and (problem := await upload_input_problem(state, owner, ref.upload_id, complete)):
            errors.append(field_error(("body", "inputs", name, "upload_id"), problem))
    if errors:
        raise unprocessable("The job's inputs are not valid.", *errors)
    await check_recording_refs(state, owner, spec)
    return complete


async def _create(
    state: GatewayState, owner: Principal, job_id: str, spec: JobSpec, *, replay: bool, upload_sizes: dict[str, int]
) -> JobRecord:
    """Write the first record (unless it exists) and publish ``job.created`` (unless stored)."""
    tenant = owner.tenant
    record = JobRecord.new(job_id, tenant, spec, utc_now(), subject=owner.subject)
    headers: dict[str, str] = {}  # the revision only of a record made here (the fold need not read it)
    try:
        revision = await kv_create(state.kv.jobs, tenant_key(tenant, job_id), record.model_dump_json().encode())
        headers[CREATED_RECORD_REVISION] = str(revision)
        JOBS_CREATED.labels(record.kind).inc()
    except KeyWrongLastSequenceError:  # made by an earlier try of this request (its Idempotency-Key)
        found = await get_record(state, tenant, job_id)
        if found is None:  # that try's create is still in flight
            retry = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)}
            raise ProblemError(503, "The job is still being created; retry.", headers=retry) from None
        record, replay = seen_by(owner, job_id, found), True
    event = job_created_event(record, upload_sizes=upload_sizes)
    subject = state.subjects.job_event(tenant, job_id, "created")
    await state.publish_once(subject, event, check=replay, headers=headers)
    return record


async def _claim(state: GatewayState, tenant: str, key: str, spec: JobSpec, job_id: str) -> tuple[str, bool]:
    """The job id for ``key`` (``job_id`` if this request claims it) and whether this request claimed it;
    422 when reused for another body."""
    kv_key = IdempotencyClaim.kv_key(tenant, key)
    claim = IdempotencyClaim(job_id=job_id, body_sha256=IdempotencyClaim.digest(spec))
    for _ in range(3):
        try:
            await kv_create(state.kv.idempotency, kv_key, claim.model_dump_json().encode())
            return claim.job_id, True
        except KeyWrongLastSequenceError:
            try:
                entry = await state.kv.idempotency.get(kv_key)
            except KeyNotFoundError:  # expired in between: claim again
                continue
        existing = IdempotencyClaim.model_validate_json(entry.value or b"")
        if existing.body_sha256 != claim.body_sha256:
            raise unprocessable(
                "This Idempotency-Key was used with a different request body.",
                field_error(("header", "Idempotency-Key"), "reused with a different body; use a new key"),
            )
        return existing.job_id, False
    raise ProblemError(409, "The Idempotency-Key is contended; retry.")


async def submit_job(
    state: GatewayState, owner: Principal, spec: JobSpec, idempotency_key: str | None, *, job_id: str | None = None
) -> tuple[JobRecord, bool]:
    """Check the kind against the token, the inputs and the quotas, claim the ``Idempotency-Key``, write the
    first record (of ``owner``'s subject) and publish ``job.created``; the record and whether this request
    created it (else it answers a replay)."""
    check_kind(owner, spec.kind)
    tenant = owner.tenant
    upload_sizes = await _check_inputs(state, owner, spec)
    if state.admission is not None:
        await state.admission.check(tenant, spec, owner.subject)
    claimed = True
    job_id = job_id or new_id("job")
    if idempotency_key is not None:
        job_id, claimed = await _claim(state, tenant, idempotency_key, spec, job_id)
    return await _create(state, owner, job_id, spec, replay=not claimed, upload_sizes=upload_sizes), claimed


@router.post(
    "",
    status_code=201,
    summary="Submit a job",
    response_description="The new job (201), or the job this Idempotency-Key already created (200).",
    responses={
        **problem_responses(401, 403, 409, 422, 429, 503),
        200: {"model": JobOut, "description": "Replay of an Idempotency-Key"},
    },
)
async def create_job(
    spec: JobCreate,
    state: StateDep,
    principal: JobsWrite,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    """Validate the spec and its inputs, record the job and publish ``job.created``."""
    if spec.is_session:
        raise unprocessable(
            f"{spec.kind} runs as a live session: start it with POST /v1/sessions.",
            field_error(("body", "kind"), "a session kind; use POST /v1/sessions"),
        )
    record, claimed = await submit_job(state, principal, spec, idempotency_key)
    response.status_code = 201 if claimed else 200
    out = await job_out(state, record, principal)
    response.headers["Location"] = out.urls.self
    return out


@router.get("/{job_id}", summary="Read a job", responses=problem_responses(401, 403, 404, 409, 422))
async def get_job(job_id: JobIdPath, state: StateDep, principal: JobsRead) -> JobOut:
    """Status, progress, result, artifacts with fresh download URLs, error, timings and cost."""
    return await job_out(state, await load_job(state, principal, job_id), principal)


@router.get("", summary="List jobs", responses=problem_responses(401, 403, 422))
async def list_jobs(
    state: StateDep,
    principal: JobsRead,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    kind: Annotated[JobKind | None, Query(description="Only jobs of this kind.")] = None,
    subject: Annotated[SubjectId | None, Query(description="Only jobs of this end user.")] = None,
    created_after: Annotated[AwareDatetime | None, Query(description="Created at or after.")] = None,
    created_before: Annotated[AwareDatetime | None, Query(description="Created before.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> JobList:
    """This tenant's jobs (a subject's token: its subject's), newest first, filtered, one page at a time (a
    job whose record is not valid: left out)."""
    of_subject = subject_filter(principal, subject)

    def keep(r: JobRecord) -> bool:
        return (
            of_subject(r)
            and (status is None or r.status is status)
            and (kind is None or r.kind is kind)
            and (created_after is None or r.created_at >= created_after)
            and (created_before is None or r.created_at < created_before)
        )

    page, next_cursor = await record_page(state, principal.tenant, cursor, limit, keep)
    return JobList(items=[await job_out(state, r, principal) for r in page], next_cursor=next_cursor)
