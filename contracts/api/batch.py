"""``POST /v1/jobs:batch``: up to :data:`BATCH_MAX` job specs in one request, one result per item."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from contracts.api.jobs import JobOut
from contracts.base import Contract, JsonObject
from contracts.ids import IdempotencyKeyText

BATCH_MAX = 1000
"""The most specs one batch holds."""


class JobBatchItem(Contract):
    """One job of a batch: its spec (validated on its own: a bad one fails only its item) and the
    ``Idempotency-Key`` of this item, as ``POST /v1/jobs`` takes it in a header."""

    model_config = ConfigDict(extra="forbid")

    spec: JsonObject
    idempotency_key: IdempotencyKeyText | None = None


class JobBatchIn(Contract):
    """The batch: 1 to 1,000 items."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[JobBatchItem] = Field(min_length=1, max_length=BATCH_MAX)


class JobBatchResult(Contract):
    """What became of one item: ``status`` as ``POST /v1/jobs`` would answer it (201 created, 200 a
    replayed Idempotency-Key, 4xx refused), with the job, or the problem document."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    status: int
    job: JobOut | None = None
    problem: JsonObject | None = None


class JobBatchOut(Contract):
    """One result per item, in the order of the request."""

    model_config = ConfigDict(extra="forbid")

    results: list[JobBatchResult]
