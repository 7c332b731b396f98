"""``GET /v1/usage``: jobs, sessions, GPU-seconds and cost per day, kind or subject, and the quotas
with today's use."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field

from contracts.base import Contract

_BODY = ConfigDict(extra="forbid")


class GroupBy(StrEnum):
    """How usage is summed."""

    DAY = "day"
    KIND = "kind"
    SUBJECT = "subject"


class UsageGroup(Contract):
    """The jobs and sessions created in the period that fall in one group, and what they used."""

    model_config = _BODY

    key: str | None = Field(description="The UTC day (YYYY-MM-DD), the kind or the subject (null: none).")
    jobs: int = Field(ge=0)
    sessions: int = Field(ge=0)
    gpu_seconds: float = Field(ge=0)
    cost_usd: float = Field(ge=0, description="Estimated from each attempt's GPU price (the jobs' cost).")


class QuotaUse(Contract):
    """The limits that apply to the caller (the tenant's, or one end user's) and what is used of them."""

    model_config = _BODY

    applies_to: Literal["tenant", "subject"]
    max_running_per_kind: int | None = Field(default=None, description="null: no limit.")
    max_queued: int | None = None
    gpu_seconds_per_day: float | None = None
    queued: int = Field(ge=0, description="Jobs waiting for a slot now.")
    gpu_seconds_today: float = Field(ge=0, description="GPU-seconds used this UTC day.")


class UsageOut(Contract):
    """Usage of the jobs and sessions created in ``[from, to)``, grouped, with the total."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    group_by: GroupBy
    groups: list[UsageGroup] = Field(description="In order of key.")
    total: UsageGroup
    quota: QuotaUse
    truncated: bool = Field(default=False, description="More jobs than usage_max_jobs: the newest were summed.")
