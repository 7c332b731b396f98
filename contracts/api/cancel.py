"""``POST /v1/jobs:cancel``: cancel many jobs at once, named by id or matched by a filter, one result per job."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from contracts.base import Contract
from contracts.ids import JobId, SubjectId
from contracts.job_parts import TERMINAL, JobStatus
from contracts.specs.jobs import JobKind

CANCEL_MAX = 1000
"""The most jobs one request names (the gateway's ``bulk_cancel_max`` may lower it)."""


class CancelFilter(Contract):
    """Which of the caller's jobs to cancel: every field given must match; only jobs not yet ended match."""

    model_config = ConfigDict(extra="forbid")

    kind: JobKind | None = None
    status: JobStatus | None = Field(default=None, description="A status a job can be canceled in (not an end).")
    subject: SubjectId | None = None
    created_before: AwareDatetime | None = None

    @model_validator(mode="after")
    def _cancelable(self) -> CancelFilter:
        if self.status is not None and self.status in TERMINAL:
            raise ValueError(f"a {self.status} job cannot be canceled; filter on a status before the end")
        return self


class JobsCancelIn(Contract):
    """Either ``ids`` (1 to 1,000 job ids) or a ``filter``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [{"required": ["ids"]}, {"required": ["filter"]}]}
    )

    ids: list[JobId] | None = Field(default=None, min_length=1, max_length=CANCEL_MAX)
    filter: CancelFilter | None = None

    @model_validator(mode="after")
    def _one_form(self) -> JobsCancelIn:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("send either ids or filter")
        return self


class CancelOutcome(StrEnum):
    """What became of one job: a cancel ``requested`` now (or ``already_requested``), the job had
    ``ended`` (``status`` says how), it is ``not_found`` (not the caller's), or ``outside_scope`` (the
    token's kinds leave it out)."""

    REQUESTED = "requested"
    ALREADY_REQUESTED = "already_requested"
    ENDED = "ended"
    NOT_FOUND = "not_found"
    OUTSIDE_SCOPE = "outside_scope"


class JobCancelResult(Contract):
    """One job's outcome."""

    model_config = ConfigDict(extra="forbid")

    id: str
    outcome: CancelOutcome
    status: JobStatus | None = Field(default=None, description="The job's status when it was read.")


class JobsCancelOut(Contract):
    """One result per job, in the order of ``ids`` (or newest first for a filter). ``more``: the filter
    matched more jobs than one request cancels; send it again for the next ones."""

    model_config = ConfigDict(extra="forbid")

    results: list[JobCancelResult]
    more: bool = False
