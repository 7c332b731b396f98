"""Uploads as inputs of jobs and sessions: what is wrong with one, read through the gateway's cache.

A completed upload's record never changes: nothing rewrites or deletes it, and its file is sealed. So a
gateway keeps the records of the uploads it completed or read completed (``upload_cache_max``, the least
recently used out first), and a submit that names one reads no KV: a KV read and its reply less for each
input. The file is still checked against its seal every time, since it lives in storage, which the cache
cannot vouch for. A pending record is read every time: it may be completed meanwhile.
"""

from __future__ import annotations

from nats.js.errors import KeyNotFoundError

from contracts.api.uploads import UploadRecord, UploadStatus
from contracts.ids import tenant_key
from services.common.auth.apikeys import Principal
from services.common.storage import ObjectChangedError, ObjectNotFoundError, check_sealed
from services.gateway.state import GatewayState


async def upload_record(state: GatewayState, tenant: str, upload_id: str) -> UploadRecord | None:
    """The record of ``tenant``'s upload ``upload_id`` (``None``: there is none), a completed one from the
    cache when it is there."""
    key = tenant_key(tenant, upload_id)
    cached = state.completed_uploads.get(key)
    if cached is not None:
        return cached
    try:
        entry = await state.kv.uploads.get(key)
    except KeyNotFoundError:
        return None
    record = UploadRecord.model_validate_json(entry.value or b"")
    if record.status is UploadStatus.COMPLETED:
        state.completed_uploads.put(key, record)
    return record


async def upload_input_problem(
    state: GatewayState, owner: Principal, upload_id: str, complete: dict[str, int] | None = None
) -> str | None:
    """What is wrong with upload ``upload_id`` as a job input of ``owner``, if anything (pending ones are
    fine; another subject's is as missing as another tenant's); its size goes into ``complete`` when it
    is complete and its file the one verified."""
    missing = f"no upload {upload_id!r}; create it with POST /v1/uploads"
    record = await upload_record(state, owner.tenant, upload_id)
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
