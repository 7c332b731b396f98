"""Uploads as inputs of jobs and sessions: what is wrong with one, read through the gateway's cache.

A completed upload's record never changes: nothing rewrites or deletes it, and its file is sealed. So a
gateway keeps the records of the uploads it completed or read completed (``upload_cache_max``, the least
recently used out first), and a submit that names one reads no KV: a KV read and its reply less for each
input. The file is still checked against its seal every time, since it lives in storage, which the cache
cannot vouch for. A pending record is read every time: it may be completed meanwhile.

A job or session accepted with a pending upload marks the record ``awaited`` first (compare-and-set,
before its ``job.created``), so the upload's completion tells the dispatcher whether any job can wait on
it (:data:`~contracts.events.uploads.UPLOAD_AWAITED`). A complete that comes between the read and the
mark makes the mark read again and find the upload completed: the job then takes it as complete.
"""

from __future__ import annotations

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from contracts.api.uploads import UploadRecord, UploadStatus
from contracts.ids import tenant_key
from services.common.auth.apikeys import Principal
from services.common.http.problem import ProblemError
from services.common.nats.kv_writes import kv_update
from services.common.storage import ObjectChangedError, ObjectNotFoundError, check_sealed
from services.gateway.state import GatewayState


async def _read(state: GatewayState, key: str) -> tuple[UploadRecord, int] | None:
    """The upload record under ``key`` and its revision (``None``: none), kept when completed."""
    try:
        entry = await state.kv.uploads.get(key)
    except KeyNotFoundError:
        return None
    record = UploadRecord.model_validate_json(entry.value or b"")
    if record.status is UploadStatus.COMPLETED:
        state.completed_uploads.put(key, record)
    return record, entry.revision or 0


async def upload_record(state: GatewayState, tenant: str, upload_id: str) -> UploadRecord | None:
    """The record of ``tenant``'s upload ``upload_id`` (``None``: there is none), a completed one from the
    cache when it is there."""
    key = tenant_key(tenant, upload_id)
    cached = state.completed_uploads.get(key)
    if cached is not None:
        return cached
    found = await _read(state, key)
    return found[0] if found is not None else None


async def upload_input_problem(
    state: GatewayState, owner: Principal, upload_id: str, complete: dict[str, int] | None = None
) -> str | None:
    """What is wrong with upload ``upload_id`` as a job input of ``owner``, if anything (pending ones are
    fine, and marked awaited; another subject's is as missing as another tenant's); its size goes into
    ``complete`` when it is complete and its file the one verified."""
    missing = f"no upload {upload_id!r}; create it with POST /v1/uploads"
    key = tenant_key(owner.tenant, upload_id)
    record = state.completed_uploads.get(key)
    if record is None:
        found = await _read(state, key)
        if found is not None and found[0].status is not UploadStatus.COMPLETED and owner.sees(found[0].subject):
            found = await _awaited(state, key, *found)
        record = found[0] if found is not None else None
    if record is None or not owner.sees(record.subject):
        return missing
    if record.status is not UploadStatus.COMPLETED:
        return None
    try:
        await check_sealed(state.storage, record.key)
    except ObjectChangedError:
        return f"upload {upload_id!r} was replaced after it was completed; upload the file again"
    except ObjectNotFoundError:
        return f"upload {upload_id!r} has no file in storage any more; upload it again"
    if complete is not None:
        complete[upload_id] = record.size
    return None


MARK_TRIES = 3
"""A pending record changes at most twice (marked, completed): a mark is refused no more often."""


async def _awaited(
    state: GatewayState, key: str, record: UploadRecord, revision: int
) -> tuple[UploadRecord, int] | None:
    """The pending upload's record (at ``revision``) marked ``awaited``, written unless it was; or the
    record completed meanwhile (``None``: gone); 503 when it kept changing under the mark."""
    for _ in range(MARK_TRIES):
        if record.status is UploadStatus.COMPLETED or record.awaited is not False:
            return record, revision  # a record from before ``awaited`` was kept counts as awaited
        marked = record.model_copy(update={"awaited": True})
        try:
            revision = await kv_update(state.kv.uploads, key, marked.model_dump_json().encode(), revision)
            return state.pending_uploads.put(key, (marked, revision))  # what a complete here writes over
        except KeyWrongLastSequenceError:
            found = await _read(state, key)
            if found is None:
                return None
            record, revision = found
    raise ProblemError(503, f"Upload {key.rpartition('.')[2]!r} kept changing; retry.", headers={"Retry-After": "1"})
