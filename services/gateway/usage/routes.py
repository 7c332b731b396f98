"""``GET /v1/usage``: the jobs and sessions created in ``[from, to)``, summed per day, kind or subject.

GPU-seconds and cost are the jobs' own (``cost`` of each record: every attempt's GPU time at its
GPU's price, a running one up to now), so the sums equal what the jobs say. The records are found by
their ids (UUIDv7: the creation time is in the id), at most ``usage_max_jobs`` of them, newest first
(``truncated`` says when more were left out). A subject's token sees its own jobs and its own quota.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from contracts.api.usage import GroupBy, QuotaUse, UsageGroup, UsageOut
from contracts.envelope import utc_now
from contracts.ids import SubjectId
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from services.common.auth.apikeys import Principal
from services.common.http.problem import field_error, problem_responses, unprocessable
from services.gateway.deps import JobsRead, StateDep
from services.gateway.jobs.listing import job_ids, records, subject_filter
from services.gateway.state import GatewayState

router = APIRouter(prefix="/v1/usage", tags=["usage"])
DEFAULT_DAYS = 30


def created_ms(job_id: str) -> int | None:
    """The creation time (Unix ms) a UUIDv7 job id holds, ``None`` for an id that is not one."""
    hex_part = job_id.partition("_")[2]
    if len(hex_part) != 32:
        return None
    try:
        return int(hex_part[:12], 16)
    except ValueError:
        return None


def _key(record: JobRecord, group_by: GroupBy) -> str | None:
    if group_by is GroupBy.DAY:
        return record.created_at.astimezone(UTC).date().isoformat()
    return str(record.kind) if group_by is GroupBy.KIND else record.subject


def _sum(key: str | None, found: list[JobRecord], now: datetime) -> UsageGroup:
    costs = [r.cost.so_far(_running_since(r), now) for r in found]
    return UsageGroup(
        key=key,
        jobs=sum(1 for r in found if r.session is None),
        sessions=sum(1 for r in found if r.session is not None),
        gpu_seconds=round(sum(c.gpu_seconds for c in costs), 6),
        cost_usd=round(sum(c.estimated_usd for c in costs), 9),
    )


def _running_since(record: JobRecord) -> datetime | None:
    running = record.status in (JobStatus.DISPATCHED, JobStatus.RUNNING)
    return record.timings.dispatched_at if running else None


async def _quota(state: GatewayState, viewer: Principal, subject: str | None) -> QuotaUse:
    assert state.admission is not None
    book, tenant = state.admission.book, viewer.tenant
    quota = await book.quota(tenant)
    if subject is None:
        return QuotaUse(
            applies_to="tenant", max_running_per_kind=quota.max_running_per_kind, max_queued=quota.max_queued,
            gpu_seconds_per_day=quota.gpu_seconds_per_day, queued=await state.admission.waiting(tenant),
            gpu_seconds_today=await book.gpu_seconds_today(tenant),
        )  # fmt: skip
    return QuotaUse(
        applies_to="subject", max_running_per_kind=quota.subject_max_running_per_kind,
        max_queued=quota.subject_max_queued, gpu_seconds_per_day=quota.subject_gpu_seconds_per_day,
        queued=await state.admission.waiting(tenant, subject),
        gpu_seconds_today=await book.subject_gpu_seconds_today(tenant, subject),
    )  # fmt: skip


@router.get("", summary="Usage and quotas", responses=problem_responses(401, 403, 422))
async def get_usage(
    state: StateDep,
    principal: JobsRead,
    from_: Annotated[
        AwareDatetime | None, Query(alias="from", description="Created at or after (default: 30 days before to).")
    ] = None,
    to: Annotated[AwareDatetime | None, Query(description="Created before (default: now).")] = None,
    group_by: Annotated[GroupBy, Query(description="day, kind or subject.")] = GroupBy.DAY,
    subject: Annotated[SubjectId | None, Query(description="Only this end user's (an API key).")] = None,
) -> UsageOut:
    """Jobs, sessions, GPU-seconds and cost per group, their total, and the quotas with today's use."""
    now = utc_now()
    end = (to or now).astimezone(UTC)
    start = (from_ or end - timedelta(days=DEFAULT_DAYS)).astimezone(UTC)
    if start >= end:
        raise unprocessable("The period is empty.", field_error(("query", "from"), "must be before to"))
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    ids = [i for i in await job_ids(state, principal.tenant) if (ms := created_ms(i)) is not None and lo <= ms < hi]
    of_subject = subject_filter(principal, subject)
    limit = state.settings.usage_max_jobs
    found = await records(
        state, principal.tenant, ids[: limit + 1], lambda r: of_subject(r) and start <= r.created_at < end, limit + 1
    )
    truncated = len(ids) > limit
    grouped: dict[str | None, list[JobRecord]] = defaultdict(list)
    for record in found[:limit]:
        grouped[_key(record, group_by)].append(record)
    keys = sorted(grouped, key=lambda k: (k is None, k or ""))
    return UsageOut(
        from_=start, to=end, group_by=group_by, groups=[_sum(k, grouped[k], now) for k in keys],
        total=_sum("total", found[:limit], now), quota=await _quota(state, principal, principal.subject or subject),
        truncated=truncated,
    )  # fmt: skip
