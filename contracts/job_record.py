"""The job record (v1): a job's state, the dispatcher's projection of its events.

Its status moves by the one table of legal moves (:data:`~contracts.job_parts.ALLOWED`; its parts and that
table live in :mod:`contracts.job_parts`, and are named here too). Records are immutable: every ``with_*``
and :meth:`JobRecord.transition` returns a new record.

A cancel request is a flag (``cancel_requested``), not a status: the job keeps running until the
worker or the dispatcher acknowledges it with ``canceled`` (or it finishes first). A status would
hide where the job was when the request came and need its own copy of every outgoing move.

Terminal records never change status, result or error; retention may still flag their artifacts
expired (:meth:`JobRecord.with_artifacts_expired`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Field, model_validator

from contracts.base import Contract, JsonObject
from contracts.envelope import utc_now
from contracts.ids import JobId, SubjectId, TenantId
from contracts.job_parts import (
    RECORD_CONFIG,
    TERMINAL,
    Artifact,
    IllegalTransitionError,
    JobCost,
    JobError,
    JobProgress,
    JobStatus,
    JobTimings,
    QueuePlace,
    SessionInfo,
    SessionState,
    StageState,
    StageStatus,
    check_transition,
)
from contracts.specs.jobs import JobKind, JobSpec

_S = JobStatus

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

    model_config = RECORD_CONFIG

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
