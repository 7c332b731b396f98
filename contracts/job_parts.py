"""The parts of a job record (:mod:`contracts.job_record`): its status and the one table of legal moves,
and the side records it holds (error, artifacts, progress, timings, cost, stages, queue place, session).

``created → queued → dispatched → running → succeeded | failed | canceled``, with
``running → retrying → dispatched`` (attempt + 1). :data:`ALLOWED` is the one table of legal moves
and :func:`check_transition` the one check. Every part is immutable (:data:`RECORD_CONFIG`).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, field_validator, model_validator

from contracts.base import Contract, JsonObject

RECORD_CONFIG = ConfigDict(extra="forbid", frozen=True)
"""Every part of a job record, and the record: no field it does not declare, never changed in place."""
_ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")


class JobStatus(StrEnum):
    """Where a job is in its life."""

    CREATED = "created"
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


_S = JobStatus
TERMINAL: frozenset[JobStatus] = frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELED})
"""Statuses that never change."""

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    _S.CREATED: frozenset({_S.QUEUED, _S.FAILED, _S.CANCELED}),
    _S.QUEUED: frozenset({_S.DISPATCHED, _S.FAILED, _S.CANCELED}),
    # dispatched → succeeded: a fast job's job.succeeded can be folded before its job.started.
    _S.DISPATCHED: frozenset({_S.RUNNING, _S.RETRYING, _S.SUCCEEDED, _S.FAILED, _S.CANCELED}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELED, _S.RETRYING}),
    _S.RETRYING: frozenset({_S.DISPATCHED, _S.FAILED, _S.CANCELED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELED: frozenset(),
}
"""The legal moves from each status. A move to the same status is never legal."""


class IllegalTransitionError(ValueError):
    """A status change the state machine does not allow."""

    def __init__(self, current: JobStatus, target: JobStatus, reason: str = "") -> None:
        self.current = current
        self.target = target
        super().__init__(f"illegal job transition {current} → {target}" + (f": {reason}" if reason else ""))


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    """Whether ``current → target`` is in :data:`ALLOWED`."""
    return target in ALLOWED[current]


def check_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise :class:`IllegalTransitionError` unless ``current → target`` is allowed."""
    if not can_transition(current, target):
        raise IllegalTransitionError(current, target, "terminal" if current in TERMINAL else "")


class JobError(Contract):
    """Why a job (or an attempt) failed. ``code`` is machine-readable, e.g. ``timeout``."""

    model_config = RECORD_CONFIG

    code: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.]*$")
    message: str = Field(default="", max_length=4000)
    retryable: bool = False
    details: JsonObject = Field(default_factory=dict)


class Artifact(Contract):
    """One result file in storage; ``url`` is a download URL added when the record is read."""

    model_config = RECORD_CONFIG

    name: str = Field(min_length=1, max_length=255, description="Relative path under the job's results.")
    key: str = Field(min_length=1, max_length=1024, description="The storage key.")
    content_type: str = Field(default="application/octet-stream", min_length=1, max_length=255)
    size: int = Field(ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    url: str | None = Field(default=None, max_length=4096)
    expires_at: AwareDatetime | None = None
    expired: bool = False

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _ARTIFACT_NAME.fullmatch(value):
            raise ValueError(f"artifact name must be a relative path of safe segments (got {value!r})")
        return value


MAX_METRICS = 32
"""Most figures one progress report carries."""
_METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _bounded_metrics(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_METRICS:
        raise ValueError(f"at most {MAX_METRICS} metrics")
    for name, item in value.items():
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"metric name {name!r} must be lower_snake_case, at most 64 characters")
        if isinstance(item, str) and len(item) > 256:
            raise ValueError(f"metric {name!r} is longer than 256 characters")
    return value


Metrics = Annotated[dict[str, bool | int | float | str], AfterValidator(_bounded_metrics)]
"""A workload's latest figures: at most 32 named (finite) numbers, flags or short strings."""


class JobProgress(Contract):
    """How far the current attempt is, and the workload's latest figures."""

    model_config = RECORD_CONFIG

    fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    stage: str | None = Field(default=None, max_length=64)
    message: str | None = Field(default=None, max_length=1000)
    metrics: Metrics = Field(default_factory=dict)


class JobTimings(Contract):
    """When the job entered each status (dispatched_at and started_at: the latest attempt)."""

    model_config = RECORD_CONFIG

    created_at: AwareDatetime | None = None
    queued_at: AwareDatetime | None = None
    dispatched_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None


class JobCost(Contract):
    """GPU time used, summed over attempts, and its estimated price."""

    model_config = RECORD_CONFIG

    gpu_seconds: float = Field(default=0.0, ge=0)
    gpu: str | None = Field(default=None, max_length=32)
    estimated_usd: float = Field(default=0.0, ge=0)
    usd_per_gpu_hour: float = Field(default=0.0, ge=0, description="The price of the current attempt's GPU.")

    def so_far(self, running_since: datetime | None, now: datetime) -> JobCost:
        """This cost with a still running attempt's time (from ``running_since`` to ``now``) added."""
        if running_since is None:
            return self
        seconds = max(0.0, (now - running_since).total_seconds())
        return self.model_copy(
            update={
                "gpu_seconds": round(self.gpu_seconds + seconds, 6),
                "estimated_usd": round(self.estimated_usd + seconds * self.usd_per_gpu_hour / 3600.0, 9),
            }
        )


class StageStatus(StrEnum):
    """Status of one pipeline stage."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class QueuePlace(Contract):
    """Where a queued job stands: its place in its tenant's queue of the kind, and when it should start."""

    model_config = RECORD_CONFIG

    position: int = Field(ge=1, description="1 = the next of this tenant's jobs of this kind to start.")
    eta_s: float | None = Field(default=None, ge=0, description="Seconds until it should start, when it was said.")
    eta_at: AwareDatetime | None = Field(default=None, description="When it should start.")


class StageState(Contract):
    """One stage of a pipeline job (e.g. nerf: colmap, train, render)."""

    model_config = RECORD_CONFIG

    name: str = Field(min_length=1, max_length=64)
    index: int = Field(ge=0)
    count: int = Field(ge=1, le=100)
    status: StageStatus = StageStatus.PENDING

    @model_validator(mode="after")
    def _index_in_range(self) -> StageState:
        if self.index >= self.count:
            raise ValueError(f"stage index {self.index} must be below count {self.count}")
        return self


class SessionState(StrEnum):
    """Where a live session is: ``starting`` until the running attempt's workload says it is ready
    (``session.ready``: model loaded, trainer built; again while a new attempt resumes it after a lost
    worker), ``live``, ``stopping`` once a stop was asked for; then the job's terminal status."""

    STARTING = "starting"
    LIVE = "live"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class SessionInfo(Contract):
    """What a live session's record adds to a job's: its stop request and latest live outputs."""

    model_config = RECORD_CONFIG

    robot_id: str | None = Field(
        default=None,
        max_length=64,
        description="The robot whose joint angles it sees: the spec's, else one of its own named by the session id.",
    )
    stop_requested: bool = False
    snapshot: Artifact | None = Field(default=None, description="The latest live output (e.g. the PLY).")
    snapshot_seq: int = Field(default=0, ge=0, description="The last frame the latest snapshot includes.")
    last_result_chunk: int = Field(default=0, ge=0)
    last_result_seq: int = Field(default=0, ge=0)
    last_alert_chunk: int = Field(default=0, ge=0)
    ready_attempt: int = Field(default=0, ge=0, description="The attempt whose workload said ready (0: none yet).")
    ready_at: AwareDatetime | None = Field(default=None, description="When it said so.")
    load_s: float | None = Field(default=None, ge=0, description="Seconds its attempt took to get ready.")
    resumable: bool | None = Field(default=None, description="Whether its workload resumes after a lost worker.")
    resumes: int = Field(default=0, ge=0, description="How many times a new attempt resumed it.")
    resumed_attempt: int = Field(default=0, ge=0, description="The latest attempt that resumed it.")
    recording_expired: bool = Field(default=False, description="Retention removed the session's recording.")
