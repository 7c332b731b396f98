"""Waiting, bounded, for a job's record to catch up with an event the page already saw.

A page learns of a job's end or a session's snapshot from the event stream; the record that the
gateway serves from is the dispatcher's fold of that event, a moment later. Rather than answer from
the stale record (a 404 snapshot, a "running" job that has ended), the dashboard's reads wait for it
with a KV watch, at most :data:`SETTLE_S` seconds.
"""

from __future__ import annotations

from collections.abc import Callable

from contracts.ids import ID_PATTERN
from contracts.job_record import JobRecord
from services.common.nats.kv_watch import latest_record
from services.gateway.state import GatewayState

SETTLE_S = 15.0
"""The longest a page's read waits for the record to fold an event it has seen (every wait is for an event
already announced, so it ends as soon as the fold catches up; 5 s gave a 404 under a loaded machine's lag)."""


async def record_when(
    state: GatewayState, tenant: str, job_id: str, done: Callable[[JobRecord], bool], timeout_s: float = SETTLE_S
) -> JobRecord | None:
    """The job's record once ``done(record)`` holds; ``None`` after ``timeout_s`` or for no such job."""
    if not ID_PATTERN.fullmatch(job_id):
        return None
    record = await latest_record(state.kv.jobs, tenant, job_id, done, timeout_s)
    return record if record is not None and done(record) else None
