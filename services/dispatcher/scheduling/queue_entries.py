"""A queue entry: one attempt of a job in its kind's queue, as KV ``dispatch_queue`` stores it.

Key ``{kind}.{tenant}.{job_id}.{attempt}`` (:func:`entry_key`); value a :class:`QueueEntry`, made by
:func:`new_entry` from the job's record and ordered by the job's submission, so a retry keeps its
place. ``claimed_by`` is the stream sequence of the dispatch ticket (a slot token) holding it. The
index that writes them and mirrors the bucket is :mod:`services.dispatcher.scheduling.queue`.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from contracts.job_record import JobRecord
from services.dispatcher.running.tickets import Ticket
from services.dispatcher.scheduling.fair import DEFAULT_PRIORITY, Candidate


class QueueEntry(BaseModel):
    """One attempt of a job in its kind's queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str
    job_id: str
    kind: str
    attempt: int = Field(ge=1)
    priority: int = Field(default=DEFAULT_PRIORITY, ge=0, le=9)
    enqueued_at: float
    not_before: float = 0.0
    claimed_by: int | None = Field(default=None, description="The stream sequence of the token holding it.")
    input_bytes: int | None = Field(default=None, ge=0, description="The inputs' size, when known (uploads).")
    concurrency_key: str | None = None
    subject: str | None = Field(default=None, description="The end user whose token submitted the job.")

    @property
    def key(self) -> str:
        """Its KV key."""
        return entry_key(self.kind, self.tenant, self.job_id, self.attempt)

    def candidate(self) -> Candidate:
        """As the fair-share pick sees it (``extra``: the entry)."""
        return Candidate(self.key, self.tenant, self.priority, self.enqueued_at, self)

    def ticket(self) -> Ticket:
        """The attempt to run."""
        return Ticket(tenant=self.tenant, job_id=self.job_id, kind=self.kind, attempt=self.attempt)


def entry_key(kind: str, tenant: str, job_id: str, attempt: int) -> str:
    """``{kind}.{tenant}.{job_id}.{attempt}``."""
    return f"{kind}.{tenant}.{job_id}.{attempt}"


def new_entry(record: JobRecord, attempt: int, delay_s: float = 0.0, input_bytes: int | None = None) -> QueueEntry:
    """The entry of ``attempt`` of ``record``, ordered by the job's submission (``created_at``, the
    gateway's clock): the fold runs in partitions, so jobs submitted together are queued in any
    order, and a retry keeps its place."""
    queued = record.created_at
    due = record.spec.due_at(record.created_at) if attempt == 1 else None
    not_before = max(time.time() + delay_s if delay_s > 0 else 0.0, due.timestamp() if due else 0.0)
    return QueueEntry(
        tenant=record.tenant,
        job_id=record.id,
        kind=str(record.kind),
        attempt=attempt,
        priority=getattr(record.spec, "priority", DEFAULT_PRIORITY),
        enqueued_at=queued.timestamp(),
        not_before=not_before,
        input_bytes=input_bytes,
        concurrency_key=getattr(record.spec, "concurrency_key", None),
        subject=record.subject,
    )
