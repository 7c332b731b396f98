"""``/v1/jobs``: submit, read, list and cancel jobs.

The gateway writes a job's first record with a KV create (so a GET right after the POST finds it)
and publishes ``job.created`` with the event id ``created-{job_id}``; from then on the dispatcher is
the record's only writer. Cancel only publishes ``job.cancel_requested`` (``cancel-{job_id}``).

``Idempotency-Key``: KV ``idempotency`` maps ``sha256(tenant + "\\n" + key)`` to the job id and the
digest of the validated spec, claimed with a KV create, so of two concurrent identical requests one
creates the job and the other answers it. A replay also finishes a creation that crashed halfway
(record or event missing), and publishes only what the stream lacks.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from pydantic import AwareDatetime

from contracts.api.jobs import (
    IdempotencyClaim,
    JobCreate,
    JobList,
    JobOut,
    JobUrls,
    decode_cursor,
    encode_cursor,
)
from contracts.envelope import utc_now
from contracts.event_ids import cancel_requested_event_id
from contracts.events.jobs import JobCancelRequestedPayload
from contracts.events.registry import EventType, job_created_event, make_event
from contracts.ids import ID_PATTERN, new_id, tenant_key, tenant_key_filter
from contracts.job_record import JobRecord, JobStatus
from contracts.record_repair import UnreadableRecordError, read_record
from contracts.specs.jobs import JobKind, JobSpec
from services.common.auth.tokens import mint_token
from services.common.http.problem import ProblemError, field_error, problem_responses, unprocessable
from services.common.nats.kv import kv_entries
from services.common.observability.metrics import JOBS_CREATED
from services.common.storage import InvalidKeyError, check_result_key
from services.gateway.deps import PrincipalDep, StateDep
from services.gateway.sessions.sources import check_recording_refs
from services.gateway.state import GatewayState
from services.gateway.uploads.routes import upload_input_problem

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JobIdPath = Annotated[str, Path(description="A job id, e.g. job_0193...")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[ -~]+$",
        description="Retry-safe submission: the same key and body answer the same job for 24 h.",
    ),
]


async def _get(state: GatewayState, tenant: str, job_id: str) -> JobRecord | None:
    """This tenant's job record, or ``None``; :class:`UnreadableRecordError` (409) for one that does not
    validate."""
    if not ID_PATTERN.fullmatch(job_id):
        return None
    try:
        entry = await state.kv.jobs.get(tenant_key(tenant, job_id))
    except KeyNotFoundError:
        return None
    return read_record(entry.value) if entry.value else None


async def _listed(state: GatewayState, tenant: str, job_id: str) -> JobRecord | None:
    """This tenant's job record for a list: one that does not validate is left out, and logged."""
    try:
        return await _get(state, tenant, job_id)
    except UnreadableRecordError as exc:
        log.warning("job %s is left out of the list: %s", job_id, exc, extra={"job_id": job_id})
        return None


async def _load(state: GatewayState, tenant: str, job_id: str) -> JobRecord:
    """This tenant's job record; 404 for any other id."""
    if (record := await _get(state, tenant, job_id)) is None:
        raise ProblemError(404, f"No job {job_id!r}.")
    return record


async def _job_ids(state: GatewayState, tenant: str) -> list[str]:
    """Every job id of ``tenant``, newest first (ids are UUIDv7, so they sort by time)."""
    items = await kv_entries(state.kv.jobs, tenant_key_filter(tenant), meta_only=True)
    return sorted((item.key.partition(".")[2] for item in items), reverse=True)


async def job_out(state: GatewayState, record: JobRecord) -> JobOut:
    """The client's view: download URLs for live artifacts under the job's own results, the job's URLs."""
    settings, ttl = state.settings, state.settings.signed_url_ttl_s
    expires_at = utc_now() + timedelta(seconds=ttl)
    artifacts = []
    for a in (a for a in record.artifacts if not a.expired):
        try:
            check_result_key(settings.storage_prefix, record.tenant, record.id, a.key)
        except InvalidKeyError:
            log.warning("job %s: artifact %r is outside the job's results: no URL", record.id, a.name)
            artifacts.append(a)
            continue
        url = await state.storage.presign_get(a.key, ttl, filename=a.name.rpartition("/")[2])
        artifacts.append(a.model_copy(update={"url": url, "expires_at": expires_at}))
    secret = settings.signing_secret.get_secret_value().encode()
    token = mint_token(secret, "stream", settings.stream_token_ttl_s, job=record.id, tenant=record.tenant)
    base = f"{settings.url}/v1/jobs/{record.id}"
    urls = JobUrls(self=base, events=f"{base}/events?token={token}", cancel=f"{base}/cancel")
    fields = set(JobOut.model_fields) - {"artifacts", "urls"}
    return JobOut.model_validate({**record.model_dump(include=fields), "artifacts": artifacts, "urls": urls})


async def _check_inputs(state: GatewayState, tenant: str, spec: JobSpec) -> None:
    """422 naming each input that is a URL (unless allowed), an upload this tenant does not have, or a
    completed upload whose file is no longer the one verified at completion; then the recording or
    source the spec names (:func:`~services.gateway.sessions.sources.check_recording_refs`)."""
    errors = []
    for name, ref in spec.inputs.refs().items():
        if ref.url is not None and not state.settings.allow_url_inputs:
            msg = "url inputs are disabled here; upload the file and pass {'upload_id': ...}"
            errors.append(field_error(("body", "inputs", name, "url"), msg))
        if ref.upload_id is not None and (problem := await upload_input_problem(state, tenant, ref.upload_id)):
            errors.append(field_error(("body", "inputs", name, "upload_id"), problem))
    if errors:
        raise unprocessable("The job's inputs are not valid.", *errors)
    await check_recording_refs(state, tenant, spec)


async def _create(state: GatewayState, tenant: str, job_id: str, spec: JobSpec, *, replay: bool) -> JobRecord:
    """Write the first record (unless it exists) and publish ``job.created`` (unless stored)."""
    record = JobRecord.new(job_id, tenant, spec, utc_now())
    try:
        await state.kv.jobs.create(tenant_key(tenant, job_id), record.model_dump_json().encode())
        JOBS_CREATED.labels(record.kind).inc()
    except KeyWrongLastSequenceError:
        record, replay = await _load(state, tenant, job_id), True
    event = job_created_event(record)
    await state.publish_once(state.subjects.job_event(tenant, job_id, "created"), event, check=replay)
    return record


async def _claim(state: GatewayState, tenant: str, key: str, spec: JobSpec, job_id: str) -> tuple[str, bool]:
    """The job id for ``key`` (``job_id`` if this request claims it) and whether this request claimed it;
    422 when reused for another body."""
    kv_key = IdempotencyClaim.kv_key(tenant, key)
    claim = IdempotencyClaim(job_id=job_id, body_sha256=IdempotencyClaim.digest(spec))
    for _ in range(3):
        try:
            await state.kv.idempotency.create(kv_key, claim.model_dump_json().encode())
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
    state: GatewayState, tenant: str, spec: JobSpec, idempotency_key: str | None, *, job_id: str | None = None
) -> tuple[JobRecord, bool]:
    """Check the inputs, claim the ``Idempotency-Key``, write the first record and publish
    ``job.created``; the record and whether this request created it (else it answers a replay)."""
    await _check_inputs(state, tenant, spec)
    if state.admission is not None:
        await state.admission.check(tenant, spec)
    claimed = True
    job_id = job_id or new_id("job")
    if idempotency_key is not None:
        job_id, claimed = await _claim(state, tenant, idempotency_key, spec, job_id)
    return await _create(state, tenant, job_id, spec, replay=not claimed), claimed


@router.post(
    "",
    status_code=201,
    summary="Submit a job",
    response_description="The new job (201), or the job this Idempotency-Key already created (200).",
    responses={
        **problem_responses(401, 409, 422, 429, 503),
        200: {"model": JobOut, "description": "Replay of an Idempotency-Key"},
    },
)
async def create_job(
    spec: JobCreate,
    state: StateDep,
    principal: PrincipalDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    """Validate the spec and its inputs, record the job and publish ``job.created``."""
    if spec.is_session:
        raise unprocessable(
            f"{spec.kind} runs as a live session: start it with POST /v1/sessions.",
            field_error(("body", "kind"), "a session kind; use POST /v1/sessions"),
        )
    record, claimed = await submit_job(state, principal.tenant, spec, idempotency_key)
    response.status_code = 201 if claimed else 200
    out = await job_out(state, record)
    response.headers["Location"] = out.urls.self
    return out


@router.get("/{job_id}", summary="Read a job", responses=problem_responses(401, 404, 409, 422))
async def get_job(job_id: JobIdPath, state: StateDep, principal: PrincipalDep) -> JobOut:
    """Status, progress, result, artifacts with fresh download URLs, error, timings and cost."""
    return await job_out(state, await _load(state, principal.tenant, job_id))


@router.get("", summary="List jobs", responses=problem_responses(401, 422))
async def list_jobs(
    state: StateDep,
    principal: PrincipalDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    kind: Annotated[JobKind | None, Query(description="Only jobs of this kind.")] = None,
    created_after: Annotated[AwareDatetime | None, Query(description="Created at or after.")] = None,
    created_before: Annotated[AwareDatetime | None, Query(description="Created before.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> JobList:
    """This tenant's jobs, newest first, filtered, one page at a time (a job whose record is not valid: left out)."""
    ids = await _job_ids(state, principal.tenant)
    if cursor is not None:
        if (last := decode_cursor(cursor)) is None:
            raise unprocessable("The cursor is not valid.", field_error(("query", "cursor"), "not a cursor"))
        ids = [job_id for job_id in ids if job_id < last]
    page: list[JobRecord] = []
    batch = max(limit, 16)
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        records = await asyncio.gather(*(_listed(state, principal.tenant, job_id) for job_id in chunk))
        page += [
            r
            for r in records
            if r is not None
            and (status is None or r.status is status)
            and (kind is None or r.kind is kind)
            and (created_after is None or r.created_at >= created_after)
            and (created_before is None or r.created_at < created_before)
        ]
        if len(page) > limit:
            break
    more = len(page) > limit
    items = [await job_out(state, r) for r in page[:limit]]
    return JobList(items=items, next_cursor=encode_cursor(page[limit - 1].id) if more else None)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    summary="Request cancellation",
    responses=problem_responses(401, 404, 409, 422, 503),
)
async def cancel_job(job_id: JobIdPath, state: StateDep, principal: PrincipalDep) -> JobOut:
    """Publish ``job.cancel_requested`` once; idempotent; 409 when the job already ended."""
    record = await _load(state, principal.tenant, job_id)
    if record.terminal:
        raise ProblemError(409, f"The job already ended ({record.status}); it cannot be canceled.")
    event = make_event(
        EventType.JOB_CANCEL_REQUESTED,
        JobCancelRequestedPayload(),
        tenant=principal.tenant,
        source="gateway",
        job_id=record.id,
        kind=record.kind,
        event_id=cancel_requested_event_id(record.id),
    )
    await state.publish_once(state.subjects.job_event(principal.tenant, record.id, "cancel_requested"), event)
    return await job_out(state, record)
