"""Payloads of the job events (``jobs.{tenant}.{job_id}.{event}``), one model per event type.

The envelope carries ``job_id``, ``kind`` and ``attempt``; a payload holds only what is particular
to its event. See :mod:`contracts.events.registry` for the type → payload table.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, ConfigDict, Field, PositiveInt

from contracts.base import Contract, JsonObject
from contracts.ids import SubjectId
from contracts.job_parts import Artifact, JobError, Metrics, StageStatus
from contracts.specs.jobs import JobSpec

_STRICT = ConfigDict(extra="forbid", frozen=True)


class JobCreatedPayload(Contract):
    """``job.created``: the gateway accepted a job; ``spec`` is the full, validated spec."""

    model_config = _STRICT

    spec: JobSpec
    max_attempts: int = Field(default=3, ge=1, le=100)
    subject: SubjectId | None = Field(default=None, description="The end user whose token created it.")
    upload_sizes: dict[str, PositiveInt] | None = Field(
        default=None,
        max_length=64,
        description="The sizes in bytes of the job's uploads that were complete when the gateway accepted it: "
        "the dispatcher queues it on them without reading the uploads again.",
    )


class JobQueuedPayload(Contract):
    """``job.queued``: every input is complete; the job waits for a backend. Its first place in its
    tenant's queue of the kind comes with it (``position``, the ETA); ``job.position`` says when it moves up."""

    model_config = _STRICT

    position: int | None = Field(
        default=None, ge=1, description="Its place as it is queued: 1 = the next of this tenant's jobs of this kind."
    )
    eta_s: float | None = Field(default=None, ge=0, description="Seconds until it should start.")
    eta_at: AwareDatetime | None = Field(default=None, description="When it should start.")


class JobPositionPayload(Contract):
    """``job.position``: where a queued job stands in its tenant's queue of the kind, and its ETA
    (from the kind's observed run times); sent when it is queued and as it moves up."""

    model_config = _STRICT

    position: int = Field(ge=1, description="1 = the next of this tenant's jobs of this kind to start.")
    eta_s: float | None = Field(default=None, ge=0, description="Seconds until it should start.")
    eta_at: AwareDatetime | None = Field(default=None, description="When it should start.")


class JobDispatchedPayload(Contract):
    """``job.dispatched``: a backend accepted the attempt; ``call_id`` is kept for cancel."""

    model_config = _STRICT

    backend: str = Field(min_length=1, max_length=32, description="e.g. local or modal.")
    function: str = Field(min_length=1, max_length=128)
    gpu: str | None = Field(default=None, max_length=32)
    call_id: str | None = Field(default=None, max_length=256)


class JobStartedPayload(Contract):
    """``job.started``: a worker began the attempt."""

    model_config = _STRICT

    worker: str = Field(min_length=1, max_length=128)
    gpu: str | None = Field(default=None, max_length=32)


class JobProgressPayload(Contract):
    """``job.progress``: how far the attempt is (monotonic within an attempt), with the workload's
    latest figures in ``metrics`` (a live session's frames, counts, loss, ...)."""

    model_config = _STRICT

    fraction: float = Field(ge=0.0, le=1.0)
    stage: str | None = Field(default=None, max_length=64)
    message: str | None = Field(default=None, max_length=1000)
    metrics: Metrics | None = None


class JobLogPayload(Contract):
    """``job.log``: one log line from the worker."""

    model_config = _STRICT

    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str = Field(max_length=8000)


class JobArtifactPayload(Artifact):
    """``job.artifact``: a result file was written to storage."""

    def to_artifact(self) -> Artifact:
        """The same fields as a plain :class:`~contracts.job_parts.Artifact`."""
        return Artifact.model_validate(self.model_dump())


class JobHeartbeatPayload(Contract):
    """``job.heartbeat``: the worker is alive."""

    model_config = _STRICT

    worker: str | None = Field(default=None, max_length=128)


class JobStagePayload(Contract):
    """``job.stage``: a pipeline stage changed status."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=64)
    index: int = Field(ge=0)
    count: int = Field(ge=1, le=100)
    status: StageStatus


class JobRetryingPayload(Contract):
    """``job.retrying``: the attempt failed in a retryable way; another follows after ``delay_s``."""

    model_config = _STRICT

    reason: str = Field(min_length=1, max_length=64, description="The error code that caused the retry.")
    message: str = Field(default="", max_length=4000)
    next_attempt: int = Field(ge=2, le=100)
    delay_s: float = Field(default=0.0, ge=0, le=86_400)


class JobCancelRequestedPayload(Contract):
    """``job.cancel_requested``: a client asked to cancel."""

    model_config = _STRICT

    reason: str | None = Field(default=None, max_length=500)


class JobSucceededPayload(Contract):
    """``job.succeeded``: the result (kind-specific JSON) and every artifact."""

    model_config = _STRICT

    result: JsonObject = Field(default_factory=dict)
    artifacts: tuple[Artifact, ...] = ()


class JobFailedPayload(Contract):
    """``job.failed``: the job ended in error (a timeout is ``error.code == "timeout"``)."""

    model_config = _STRICT

    error: JobError


class JobCanceledPayload(Contract):
    """``job.canceled``: the job stopped because it was canceled."""

    model_config = _STRICT

    reason: str | None = Field(default=None, max_length=500)
