"""Reading job records for lists: a tenant's ids newest first, pages filtered by a predicate.

``GET /v1/jobs``, ``GET /v1/sessions``, the bulk cancel's filter and ``GET /v1/usage`` all walk KV
``jobs`` the same way: the keys of the tenant (ids are UUIDv7, so they sort by time), then the
records in bounded batches, a record that does not validate left out (and logged).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError

from contracts.api.jobs import decode_cursor, encode_cursor
from contracts.ids import ID_PATTERN, tenant_key, tenant_key_filter
from contracts.job_record import JobRecord
from contracts.record_repair import UnreadableRecordError, read_record
from services.common.auth.apikeys import Principal
from services.common.http.problem import field_error, unprocessable
from services.common.nats.kv import kv_entries
from services.gateway.state import GatewayState

log = logging.getLogger(__name__)
READ_BATCH = 16
"""Records read at once while a page fills."""


async def get_record(state: GatewayState, tenant: str, job_id: str) -> JobRecord | None:
    """This tenant's job record, or ``None``; :class:`UnreadableRecordError` (409) for one that does not
    validate."""
    if not ID_PATTERN.fullmatch(job_id):
        return None
    try:
        entry = await state.kv.jobs.get(tenant_key(tenant, job_id))
    except KeyNotFoundError:
        return None
    return read_record(entry.value) if entry.value else None


async def listed(state: GatewayState, tenant: str, job_id: str) -> JobRecord | None:
    """This tenant's job record for a list: one that does not validate is left out, and logged."""
    try:
        return await get_record(state, tenant, job_id)
    except UnreadableRecordError as exc:
        log.warning("job %s is left out of the list: %s", job_id, exc, extra={"job_id": job_id})
        return None


async def job_ids(state: GatewayState, tenant: str) -> list[str]:
    """Every job id of ``tenant``, newest first (ids are UUIDv7, so they sort by time)."""
    items = await kv_entries(state.kv.jobs, tenant_key_filter(tenant), meta_only=True)
    return sorted((item.key.partition(".")[2] for item in items), reverse=True)


def subject_filter(viewer: Principal, asked: str | None) -> Callable[[JobRecord], bool]:
    """Which records a list shows ``viewer``: a subject-bound token its subject's only; an API key all, or
    the ``?subject=`` it asks for."""
    wanted = viewer.subject if viewer.subject is not None else asked
    if viewer.subject is not None and asked is not None and asked != viewer.subject:
        return lambda record: False
    return lambda record: wanted is None or record.subject == wanted


def after_cursor(ids: list[str], cursor: str | None) -> list[str]:
    """The ids after ``cursor`` (``next_cursor`` of the previous page); 422 for a bad cursor."""
    if cursor is None:
        return ids
    if (last := decode_cursor(cursor)) is None:
        raise unprocessable("The cursor is not valid.", field_error(("query", "cursor"), "not a cursor"))
    return [job_id for job_id in ids if job_id < last]


async def records(
    state: GatewayState, tenant: str, ids: list[str], keep: Callable[[JobRecord], bool], limit: int
) -> list[JobRecord]:
    """Up to ``limit`` records of ``ids`` (in their order) that ``keep`` accepts, read in bounded batches."""
    found: list[JobRecord] = []
    batch = max(min(limit, 100), READ_BATCH)
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        read = await asyncio.gather(*(listed(state, tenant, job_id) for job_id in chunk))
        found += [r for r in read if r is not None and keep(r)]
        if len(found) >= limit:
            break
    return found[:limit]


async def record_page(
    state: GatewayState, tenant: str, cursor: str | None, limit: int, keep: Callable[[JobRecord], bool]
) -> tuple[list[JobRecord], str | None]:
    """One page of the tenant's records, newest first, that ``keep`` accepts, and the next page's cursor."""
    ids = after_cursor(await job_ids(state, tenant), cursor)
    page = await records(state, tenant, ids, keep, limit + 1)
    more = len(page) > limit
    return page[:limit], encode_cursor(page[limit - 1].id) if more else None
