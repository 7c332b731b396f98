"""The job record (v1) and its state machine.

``created → queued → dispatched → running → succeeded | failed | canceled``, with
``running → retrying → dispatched`` (attempt + 1). :data:`ALLOWED` is the one table of legal moves
and :func:`check_transition` the one check. Records are immutable: every ``with_*`` and
:meth:`JobRecord.transition` returns a new record.

A cancel request is a flag (``cancel_requested``), not a status: the job keeps running until the
worker or the dispatcher acknowledges it with ``canceled`` (or it finishes first). A status would
hide where the job was when the request came and need its own copy of every outgoing move.

Terminal records never change status, result or error; retention may still flag their artifacts
expired (:meth:`JobRecord.with_artifacts_expired`).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, field_validator, model_validator

from contracts.base import Contract, JsonObject
from contracts.envelope import utc_now
from contracts.ids import JobId, SubjectId, TenantId
from contracts.specs.jobs import JobKind, JobSpec

_STRICT = ConfigDict(extra="forbid", frozen=True)
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

    model_config = _STRICT

    code: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.]*$")
    message: str = Field(default="", max_length=4000)
    retryable: bool = False
    details: JsonObject = Field(default_factory=dict)


class Artifact(Contract):
    """One result file in storage; ``url`` is a download URL added when the record is read."""

    model_config = _STRICT

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

    model_config = _STRICT

    fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    stage: str | None = Field(default=None, max_length=64)
    message: str | None = Field(default=None, max_length=1000)
    metrics: Metrics = Field(default_factory=dict)


class JobTimings(Contract):
    """When the job entered each status (dispatched_at and started_at: the latest attempt)."""

    model_config = _STRICT

    created_at: AwareDatetime | None = None
    queued_at: AwareDatetime | None = None
    dispatched_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None


class JobCost(Contract):
    """GPU time used, summed over attempts, and its estimated price."""

    model_config = _STRICT

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

    model_config = _STRICT

    position: int = Field(ge=1, description="1 = the next of this tenant's jobs of this kind to start.")
    eta_s: float | None = Field(default=None, ge=0, description="Seconds until it should start, when it was said.")
    eta_at: AwareDatetime | None = Field(default=None, description="When it should start.")


class StageState(Contract):
    """One stage of a pipeline job (e.g. nerf: colmap, train, render)."""

    model_config = _STRICT

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

    model_config = _STRICT

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


_ENTERED: dict[JobStatus, str] = {
    _S.QUEUED: "queued_at",
    _S.DISPATCHED: "dispatched_at",
    _S.RUNNING: "started_at",
    _S.SUCCEEDED: "finished_at",
    _S.FAILED: "finished_at",
    _S.CANCELED: "finished_at",
}


class JobRecord(Contract):
    """A job's state: the dispatcher's projection of its events, stored in the ``jobs`` KV bucket."""

    model_config = _STRICT

    id: JobId
    tenant: TenantId
    subject: SubjectId | None = Field(default=None, description="The end user whose token created it.")
    kind: JobKind
    spec: JobSpec
    status: JobStatus = JobStatus.CREATED
    attempt: int = Field(default=1, ge=1)
    max_attempts: int = Field(default=3, ge=1, le=100)
    progress: JobProgress = Field(default_factory=JobProgress)
    stage: str | None = Field(default=None, max_length=64)
    stages: tuple[StageState, ...] = ()
    result: JsonObject | None = None
    artifacts: tuple[Artifact, ...] = ()
    error: JobError | None = None
    timings: JobTimings = Field(default_factory=JobTimings)
    cost: JobCost = Field(default_factory=JobCost)
    cancel_requested: bool = False
    backend: str | None = Field(default=None, max_length=32)
    call_id: str | None = Field(default=None, max_length=256, description="Backend call id, for cancel.")
    heartbeat_at: AwareDatetime | None = None
    session: SessionInfo | None = Field(default=None, description="Set for live sessions (splat, vlm).")
    queue: QueuePlace | None = Field(default=None, description="While queued: its position and ETA.")
    created_at: AwareDatetime
    updated_at: AwareDatetime

    @model_validator(mode="after")
    def _consistent(self) -> JobRecord:
        if self.kind != self.spec.kind:
            raise ValueError(f"kind {self.kind} does not match spec kind {self.spec.kind}")
        if self.attempt > self.max_attempts:
            raise ValueError(f"attempt {self.attempt} exceeds max_attempts {self.max_attempts}")
        return self

    @classmethod
    def new(
        cls, job_id: str, tenant: str, spec: JobSpec, at: datetime, max_attempts: int = 3, subject: str | None = None
    ) -> JobRecord:
        """A fresh ``created`` record for ``spec`` (of end user ``subject``, when a subject's token made it); a
        session kind's gets its :class:`SessionInfo`, bound to the spec's robot, or to a robot of its own
        with the session's id."""
        session = SessionInfo(robot_id=getattr(spec, "robot_id", None) or job_id) if spec.is_session else None
        return cls(
            id=job_id,
            tenant=tenant,
            subject=subject,
            kind=JobKind(spec.kind),
            spec=spec,
            max_attempts=max_attempts,
            timings=JobTimings(created_at=at),
            session=session,
            created_at=at,
            updated_at=at,
        )

    @property
    def session_state(self) -> SessionState | None:
        """A session's state (``None`` for batch jobs)."""
        if self.session is None:
            return None
        if self.terminal:
            return SessionState(self.status.value)
        if self.status is not _S.RUNNING:
            return SessionState.STARTING
        if self.session.stop_requested:
            return SessionState.STOPPING
        return SessionState.LIVE if self.session.ready_attempt == self.attempt else SessionState.STARTING

    @property
    def terminal(self) -> bool:
        """Whether the status can no longer change."""
        return self.status in TERMINAL

    @property
    def attempts_left(self) -> int:
        """How many more attempts a retry may start."""
        return self.max_attempts - self.attempt

    def _evolve(self, at: datetime | None, **changes: Any) -> JobRecord:
        return self.model_copy(update={**changes, "updated_at": at or utc_now()})

    def transition(
        self,
        target: JobStatus,
        at: datetime,
        *,
        error: JobError | None = None,
        result: dict[str, Any] | None = None,
        cost: JobCost | None = None,
    ) -> JobRecord:
        """A new record in ``target``; ``retrying → dispatched`` starts the next attempt.

        Raises :class:`IllegalTransitionError` for a move outside :data:`ALLOWED` (so always
        for a terminal record) and for a re-dispatch with no attempts left.
        """
        check_transition(self.status, target)
        changes: dict[str, Any] = {"status": target}
        if self.status is _S.RETRYING and target is _S.DISPATCHED:
            if self.attempts_left <= 0:
                raise IllegalTransitionError(self.status, target, f"no attempts left ({self.max_attempts})")
            changes |= {"attempt": self.attempt + 1, "progress": JobProgress(), "heartbeat_at": None}
            changes |= {"error": None, "call_id": None}
        if (field := _ENTERED.get(target)) is not None:
            changes["timings"] = self.timings.model_copy(update={field: at})
        if error is not None:
            changes["error"] = error
        if result is not None:
            changes["result"] = result
        if cost is not None:
            changes["cost"] = cost
        if target is _S.SUCCEEDED:
            changes["progress"] = self.progress.model_copy(update={"fraction": 1.0})
        return self._evolve(at, **changes)

    def _accepts(self, attempt: int) -> bool:
        return not self.terminal and attempt == self.attempt

    def with_progress(
        self,
        attempt: int,
        fraction: float,
        stage: str | None = None,
        message: str | None = None,
        at: datetime | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> JobRecord:
        """Progress of ``attempt``; ignored (same record back) when it is from another attempt,
        lower than the current fraction, the record is terminal, or the job is not dispatched
        or running."""
        if not self._accepts(attempt) or self.status not in (_S.DISPATCHED, _S.RUNNING):
            return self
        progress = JobProgress(
            fraction=fraction, stage=stage or self.progress.stage, message=message, metrics=metrics or {}
        )
        if progress.fraction < self.progress.fraction:
            return self
        return self._evolve(at, progress=progress, stage=progress.stage)

    def with_stage(self, attempt: int, state: StageState, at: datetime | None = None) -> JobRecord:
        """Record one pipeline stage's state (replacing the stage with the same index). The ``failed`` of a
        stage not ended yet is kept after the job's end too: a worker's own ``job.failed`` comes before
        it (and may come before the stage's ``running``, when the stage fails the moment it starts)."""
        closing = (
            self.terminal
            and attempt == self.attempt
            and state.status is StageStatus.FAILED
            and all(s.status is StageStatus.RUNNING for s in self.stages if s.index == state.index)
        )
        if not (self._accepts(attempt) or closing):
            return self
        stages = sorted([*(s for s in self.stages if s.index != state.index), state], key=lambda s: s.index)
        return self._evolve(at, stages=tuple(stages), stage=state.name)

    def with_artifact(self, attempt: int, artifact: Artifact, at: datetime | None = None) -> JobRecord:
        """Add (or replace, by name) one artifact of ``attempt``."""
        if not self._accepts(attempt):
            return self
        kept = tuple(a for a in self.artifacts if a.name != artifact.name)
        return self._evolve(at, artifacts=(*kept, artifact))

    def with_heartbeat(self, attempt: int, at: datetime) -> JobRecord:
        """The worker of ``attempt`` is alive at ``at``."""
        return self._evolve(at, heartbeat_at=at) if self._accepts(attempt) else self

    def with_dispatch(self, backend: str, call_id: str | None, at: datetime | None = None) -> JobRecord:
        """Remember where the current attempt runs (for cancel)."""
        return self if self.terminal else self._evolve(at, backend=backend, call_id=call_id)

    def with_cancel_requested(self, at: datetime | None = None) -> JobRecord:
        """Flag a cancel request; a terminal record is returned unchanged."""
        if self.terminal or self.cancel_requested:
            return self
        return self._evolve(at, cancel_requested=True)

    def with_session(self, at: datetime | None = None, **changes: Any) -> JobRecord:
        """A live session's info changed (``stop_requested``, ``snapshot``, ...); unchanged when the
        record is terminal or no session."""
        if self.session is None or self.terminal:
            return self
        return self._evolve(at, session=self.session.model_copy(update=changes))

    def with_recording_expired(self, at: datetime | None = None) -> JobRecord:
        """Retention removed the session's recording (allowed on terminal records)."""
        if self.session is None or self.session.recording_expired:
            return self
        return self._evolve(at, session=self.session.model_copy(update={"recording_expired": True}))

    def with_artifacts_expired(self, names: set[str] | None = None, at: datetime | None = None) -> JobRecord:
        """Retention: flag artifacts (all, or those in ``names``) expired; allowed on terminal records."""
        artifacts = tuple(
            a.model_copy(update={"expired": True, "url": None}) if names is None or a.name in names else a
            for a in self.artifacts
        )
        changes: dict[str, Any] = {"artifacts": artifacts}
        if self.session is not None and self.session.snapshot is not None and names is None:
            expired = self.session.snapshot.model_copy(update={"expired": True, "url": None})
            changes["session"] = self.session.model_copy(update={"snapshot": expired})
        return self._evolve(at, **changes)
