"""``POST /v1/jobs:batch``: up to :data:`BATCH_MAX` job specs in one request, one result per item."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.api_jobs import JobOut

BATCH_MAX = 1000
"""The most specs one batch holds."""


class JobBatchItem(BaseModel):
    """One job of a batch: its spec (validated on its own: a bad one fails only its item) and the
    ``Idempotency-Key`` of this item, as ``POST /v1/jobs`` takes it in a header."""

    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any]
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^[ -~]+$")


class JobBatchIn(BaseModel):
    """The batch: 1 to 1,000 items."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[JobBatchItem] = Field(min_length=1, max_length=BATCH_MAX)


class JobBatchResult(BaseModel):
    """What became of one item: ``status`` as ``POST /v1/jobs`` would answer it (201 created, 200 a
    replayed Idempotency-Key, 4xx refused), with the job, or the problem document."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    status: int
    job: JobOut | None = None
    problem: dict[str, Any] | None = None


class JobBatchOut(BaseModel):
    """One result per item, in the order of the request."""

    model_config = ConfigDict(extra="forbid")

    results: list[JobBatchResult]
