"""Waiting, bounded, for a job's record in KV ``jobs`` to reach a state (a KV watch, no polling).

One owner for the gateway's reads that must not answer from a record older than an event already
seen (the dashboard's panels, the seed's ``/stop-training``) and the tests that wait on a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.js.kv import KeyValue

from contracts.ids import tenant_key
from contracts.job_record import JobRecord
from contracts.record_repair import UnreadableRecordError, read_record

log = logging.getLogger(__name__)


async def latest_record(
    kv: KeyValue, tenant: str, job_id: str, done: Callable[[JobRecord], bool], timeout_s: float
) -> JobRecord | None:
    """The job's record as soon as ``done(record)`` holds; after ``timeout_s`` the last one seen
    (which does not satisfy ``done``), or ``None`` when the job has no record. A revision that does
    not validate is passed over."""
    record: JobRecord | None = None
    watcher = await kv.watch(tenant_key(tenant, job_id))
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                async for entry in watcher:
                    if entry is not None and entry.value:
                        try:
                            record = read_record(entry.value)
                        except UnreadableRecordError as exc:  # the dispatcher may write a readable one next
                            log.warning("job %s: %s", job_id, exc, extra={"job_id": job_id})
                            continue
                        if done(record):
                            return record
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return record
