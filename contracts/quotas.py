"""Per-tenant quotas and usage, kept in KV so they change without a restart.

KV ``quotas``, key = the tenant: a :class:`TenantQuota`; a field left out (``null``) takes the
deployment's default (settings ``GPURELAY_QUOTA_*``). Its ``subject_*`` fields bound each end user
(the ``subject`` of a scoped token) of the tenant alike. KV ``tenant_usage``, key
``{tenant}.{YYYYMMDD}`` (UTC day): the GPU-seconds its attempts used that day; key
``{tenant}.subject.{digest}.{YYYYMMDD}``: those of one subject's jobs (:func:`subject_usage_key`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ConfigDict, Field

from contracts.base import Contract
from contracts.ids import subject_digest


class TenantQuota(Contract):
    """A tenant's limits; ``None`` = the deployment's default (and there, unlimited)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float | None = Field(default=None, gt=0, description="Fair-share weight of its queued work.")
    max_running_per_kind: int | None = Field(default=None, ge=1, description="Attempts running at once, per kind.")
    max_queued: int | None = Field(default=None, ge=0, description="Jobs waiting for a slot (submit answers 429).")
    gpu_seconds_per_day: float | None = Field(
        default=None, ge=0, description="GPU-seconds per UTC day; a job that would exceed it is refused."
    )
    concurrency_key_limit: int | None = Field(
        default=None, ge=1, description="Attempts running at once per concurrency_key of its specs."
    )
    subject_max_running_per_kind: int | None = Field(
        default=None, ge=1, description="Per end user (subject) of the tenant: attempts running at once, per kind."
    )
    subject_max_queued: int | None = Field(
        default=None, ge=0, description="Per end user: jobs waiting for a slot (submit answers 429)."
    )
    subject_gpu_seconds_per_day: float | None = Field(
        default=None, ge=0, description="Per end user: GPU-seconds per UTC day; a job that would exceed it is refused."
    )

    def over(self, defaults: TenantQuota) -> TenantQuota:
        """This quota with ``defaults`` filling the fields it leaves out."""
        return TenantQuota.model_validate(defaults.model_dump() | self.model_dump(exclude_none=True))


class TenantUsage(Contract):
    """What a tenant used in one UTC day."""

    model_config = ConfigDict(extra="forbid")

    gpu_seconds: float = Field(default=0.0, ge=0)


def usage_key(tenant: str, at: datetime | None = None) -> str:
    """``{tenant}.{YYYYMMDD}`` of the UTC day of ``at`` (now)."""
    return f"{tenant}.{(at or datetime.now(UTC)).astimezone(UTC):%Y%m%d}"


def subject_usage_key(tenant: str, subject: str, at: datetime | None = None) -> str:
    """``{tenant}.subject.{digest}.{YYYYMMDD}``: one end user's usage that UTC day (the subject hashed, as
    a KV key cannot hold every character a subject may)."""
    return f"{tenant}.subject.{subject_digest(subject)}.{(at or datetime.now(UTC)).astimezone(UTC):%Y%m%d}"


def seconds_to_midnight(at: datetime | None = None) -> int:
    """Whole seconds until the next UTC day (at least 1)."""
    now = (at or datetime.now(UTC)).astimezone(UTC)
    return max(1, 86_400 - (now.hour * 3600 + now.minute * 60 + now.second))
