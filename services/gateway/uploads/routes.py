"""``/v1/uploads``: pre-signed uploads straight to storage, verified before anything is published.

``POST /v1/uploads`` records a pending upload in KV ``uploads`` and returns a pre-signed PUT that
lives ``upload_url_ttl_s`` plus the time to send the declared size at ``upload_url_min_bytes_per_s``.
``POST /v1/uploads/{id}/complete`` (on the record the gateway kept when it created the upload, else
read: ``upload_cache_max``) seals the object (:mod:`~services.common.storage.seals`), checks
it (it exists, its size is the declared one, its magic bytes fit the declared type, all read
pinned to the sealed ETag: :mod:`~services.gateway.uploads.verify`), marks the record completed with
compare-and-set (the verified ETag in it) and publishes ``upload.completed`` with the event id
``upload-completed-{id}``. A refused object is unsealed, so the client may send it again; a completed
one stays sealed, also when completes of it ran at once (each that sealed ends by putting the seal back
from the completed record): the local backend refuses a later PUT, and on S3, where a URL cannot be revoked,
its users compare it with the seal before using it. The
record is the source of truth: completing a completed upload answers the same record and only
publishes when the event is missing from the stream (a crash between the KV write and the
publish), so the event exists once. The event's ``Gpurelay-Upload-Awaited`` header says whether a job
named the upload while it was pending (the record's ``awaited``): without one the dispatcher reads no
waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.api.uploads import PresignedUpload, UploadCreate, UploadOut, UploadRecord, UploadStatus
from contracts.envelope import EventEnvelope
from contracts.event_ids import upload_completed_event_id
from contracts.events.registry import EventType, make_event
from contracts.events.uploads import UPLOAD_AWAITED, UploadCompletedPayload
from contracts.ids import ID_PATTERN, new_id, tenant_key
from services.common.auth.apikeys import Principal
from services.common.http.problem import ProblemError, field_error, problem_responses, unprocessable
from services.common.nats.connection import log_failure
from services.common.nats.kv_writes import kv_update
from services.common.storage import upload_key
from services.common.storage.base import MAX_EXPIRES_S
from services.gateway.deps import StateDep, UploadsWrite
from services.gateway.settings import GatewaySettings
from services.gateway.state import GatewayState
from services.gateway.uploads.inputs import MARK_TRIES
from services.gateway.uploads.verify import keep_seal, verify

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/uploads", tags=["uploads"])
UploadIdPath = Annotated[str, Path(description="An upload id, e.g. upl_0193...")]


async def _entry(kv: KeyValue, viewer: Principal, upload_id: str) -> tuple[UploadRecord, int]:
    """The record of the caller's upload and its KV revision; 404 for any other id (another tenant's, or
    another subject's for a subject-bound token)."""
    tenant = viewer.tenant
    if ID_PATTERN.fullmatch(upload_id):
        try:
            entry = await kv.get(tenant_key(tenant, upload_id))
        except KeyNotFoundError:
            entry = None
        if entry is not None and entry.value and entry.revision is not None:
            record = UploadRecord.model_validate_json(entry.value)
            if viewer.sees(record.subject):
                return record, entry.revision
    raise ProblemError(404, f"No upload {upload_id!r}.")


async def _to_complete(state: GatewayState, viewer: Principal, upload_id: str) -> tuple[UploadRecord, int]:
    """The record a complete starts from and its revision: the pending one this gateway wrote, kept since
    (taken out: the complete writes the next), or read (a message get and its reply less per upload).
    A kept one may be stale (another gateway completed it, or marked it awaited): the completed write is a
    compare-and-set on its revision, refused then, and reads it again (:func:`_mark_completed`)."""
    if ID_PATTERN.fullmatch(upload_id):
        kept = state.pending_uploads.pop(tenant_key(viewer.tenant, upload_id))
        if kept is not None and viewer.sees(kept[0].subject):
            return kept
    return await _entry(state.kv.uploads, viewer, upload_id)


def _completed_event(record: UploadRecord) -> EventEnvelope:
    payload = UploadCompletedPayload(
        upload_id=record.id,
        key=record.key,
        filename=record.filename,
        content_type=record.content_type,
        size=record.size,
        sha256=record.sha256,
    )
    return make_event(
        EventType.UPLOAD_COMPLETED,
        payload,
        tenant=record.tenant,
        source="gateway",
        event_id=upload_completed_event_id(record.id),
        time=record.completed_at,
    )


def upload_url_ttl_s(settings: GatewaySettings, size: int) -> int:
    """How long the PUT of ``size`` bytes is signed for: a few minutes plus the time to send them."""
    return min(MAX_EXPIRES_S, settings.upload_url_ttl_s + math.ceil(size / settings.upload_url_min_bytes_per_s))


@router.post(
    "",
    status_code=201,
    summary="Start an upload",
    response_description="A pre-signed PUT: send the bytes there, then complete the upload.",
    responses=problem_responses(401, 403, 422),
)
async def create_upload(
    body: UploadCreate, state: StateDep, principal: UploadsWrite, response: Response
) -> PresignedUpload:
    """Declare a file; the content type must be allowed and the size within the limit."""
    settings = state.settings
    content_type = body.content_type.strip().lower()
    errors = []
    if content_type not in settings.allowed_content_types:
        allowed = ", ".join(settings.allowed_content_types)
        errors.append(field_error(("body", "content_type"), f"must be one of: {allowed}"))
    if body.size > settings.max_upload_bytes:
        errors.append(field_error(("body", "size"), f"may not exceed {settings.max_upload_bytes} bytes"))
    if errors:
        raise unprocessable("The upload cannot be accepted.", *errors)
    upload_id = new_id("upl")
    key = upload_key(settings.storage_prefix, principal.tenant, upload_id, body.filename)
    record = UploadRecord(
        id=upload_id,
        tenant=principal.tenant,
        subject=principal.subject,
        key=key,
        filename=body.filename,
        content_type=content_type,
        size=body.size,
        created_at=datetime.now(UTC),
        awaited=False,
    )
    revision = await state.kv.uploads.create(tenant_key(principal.tenant, upload_id), record.model_dump_json().encode())
    state.pending_uploads.put(tenant_key(principal.tenant, upload_id), (record, revision))
    signed = await state.storage.presign_put(key, content_type, body.size, upload_url_ttl_s(settings, body.size))
    response.headers["Location"] = f"{settings.url}/v1/uploads/{upload_id}"
    return PresignedUpload(
        id=upload_id,
        method=signed.method,
        url=signed.url,
        headers=signed.headers,
        expires_at=signed.expires_at,
    )


@router.post(
    "/{upload_id}/complete",
    summary="Verify an upload and publish upload.completed",
    responses=problem_responses(401, 403, 404, 409, 422, 503, 507),
)
async def complete_upload(upload_id: UploadIdPath, state: StateDep, principal: UploadsWrite) -> UploadOut:
    """Check size and magic bytes; idempotent: completing twice answers the same record.

    Once completed, the file can no longer be replaced (409 on the local backend's PUT; on S3 a job
    whose input changed after completion is refused or fails with ``input_changed``).
    """
    record, revision = await _to_complete(state, principal, upload_id)
    key = tenant_key(principal.tenant, record.id)
    subject = state.subjects.upload_completed(principal.tenant, record.id)
    if record.status is not UploadStatus.COMPLETED:
        try:
            info, sha256 = await verify(state, record)
        except Exception:
            completed = await _completed_meanwhile(state, principal, upload_id)
            if completed is None:
                raise
            record = completed  # answered as any complete of a completed upload, below
        else:
            done, fresh = await _mark_completed(state, principal, record, revision, info.etag, sha256)
            state.completed_uploads.put(key, done)
            await state.publish_once(subject, _completed_event(done), check=not fresh, headers=_awaited_header(done))
            with _seal_failure_logged(upload_id):  # over a concurrent complete's unseal, or (not fresh) this one's seal
                await keep_seal(state, done)
            return done.to_out()
    state.completed_uploads.put(key, record)
    await state.publish_once(subject, _completed_event(record), headers=_awaited_header(record))
    return record.to_out()


async def _completed_meanwhile(state: GatewayState, principal: Principal, upload_id: str) -> UploadRecord | None:
    """After a refused check: the upload's record when another complete completed it meanwhile (or before,
    the record this one started from kept from its creation), its seal put back as that complete verified
    it; ``None``: the refusal stands."""
    with _seal_failure_logged(upload_id):
        record = (await _entry(state.kv.uploads, principal, upload_id))[0]
        await keep_seal(state, record)
        return record if record.status is UploadStatus.COMPLETED else None
    return None


@contextlib.contextmanager
def _seal_failure_logged(upload_id: str) -> Iterator[None]:
    """A seal that could not be put back (:mod:`~services.gateway.uploads.verify`) is logged: what the
    complete answers stands (the upload completed and its event published, or the refusal)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - told in the log; the complete's own answer goes on
        log_failure(log, exc, f"upload {upload_id}: its seal could not be put back")


async def _mark_completed(
    state: GatewayState, principal: Principal, record: UploadRecord, revision: int, etag: str, sha256: str | None
) -> tuple[UploadRecord, bool]:
    """The verified upload's record written completed over ``revision`` (compare-and-set), and ``True``;
    or the record a concurrent complete wrote, and ``False``. A job marking the pending record awaited
    meanwhile (:mod:`~services.gateway.uploads.inputs`) is read and completed over, mark kept."""
    key = tenant_key(principal.tenant, record.id)
    for _ in range(MARK_TRIES):
        now = datetime.now(UTC)
        done = record.model_copy(
            update={"status": UploadStatus.COMPLETED, "completed_at": now, "sha256": sha256, "etag": etag}
        )
        try:
            await kv_update(state.kv.uploads, key, done.model_dump_json().encode(), revision)
            return done, True
        except KeyWrongLastSequenceError:
            record, revision = await _entry(state.kv.uploads, principal, record.id)
            if record.status is UploadStatus.COMPLETED:  # a concurrent complete won: answer with its record
                return record, False
    raise ProblemError(409, "The upload changed concurrently; retry.")


def _awaited_header(record: UploadRecord) -> dict[str, str]:
    """``upload.completed``'s :data:`UPLOAD_AWAITED` header: whether a job may wait on the upload."""
    return {UPLOAD_AWAITED: "0" if record.awaited is False else "1"}


@router.get("/{upload_id}", summary="Read an upload", responses=problem_responses(401, 403, 404, 422))
async def get_upload(upload_id: UploadIdPath, state: StateDep, principal: UploadsWrite) -> UploadOut:
    """The upload's status, name, type and size."""
    record, _ = await _entry(state.kv.uploads, principal, upload_id)
    return record.to_out()
