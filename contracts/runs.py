"""The dispatcher ↔ worker wire: what one run is (:class:`RunRequest`) and how it ended (:class:`Outcome`).

The dispatcher sends a :class:`RunRequest` to a backend (over the local pool's pipe, or as the
argument of a Modal call); the worker runtime runs it and answers an :class:`Outcome` as JSON. A
pipeline stage carries its :class:`StagePlan`: its place among the stages and its share of the
overall progress. Both ends import these from here, so neither depends on the other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from contracts.base import Contract, JsonObject
from contracts.job_parts import Artifact, JobError

PROGRESS_MIN_INTERVAL_S = 0.25
"""The least time between two progress reports of a run, by default: at most four ``job.progress`` a second
(the first, any 100 % and the last always go). Each one is a stored event that the fold, the notifier and
every follower read (issue 34: about 6 messages); a bar moved four times a second still looks smooth, and
the fold writes the record no more often (``fold_linger_s``). The dispatcher's
``progress_min_interval_s`` sets it for every run."""


class StagePlan(Contract):
    """Which pipeline stage a run is, and its share of the overall progress."""

    model_config = ConfigDict(frozen=True)

    name: str
    index: int
    count: int
    offset: float = 0.0
    weight: float = 1.0


class RunRequest(Contract):
    """One attempt (or one stage of it) to run."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    job_id: str
    kind: str
    attempt: int
    spec: JsonObject
    function: str = Field(description="module:function (local) or the Modal function name.")
    inputs: tuple[Artifact, ...] = Field(default=(), description="The previous stage's artifacts.")
    stage: StagePlan | None = None
    worker: str = "worker"
    heartbeat_interval_s: float = 10.0
    progress_min_interval_s: float = Field(
        default=PROGRESS_MIN_INTERVAL_S,
        ge=0,
        le=60,
        description="The least time between two progress reports the worker sends (0: every one).",
    )
    storage_prefix: str = ""
    created_at: datetime | None = Field(
        default=None, description="When the job was created: a live session reads its robot's joints from then."
    )
    resumes_after: datetime | None = Field(
        default=None,
        description="A live session's later attempt: when the attempt before it ended (the gap it resumes after).",
    )
    dispatched_seq: int = Field(
        default=0,
        ge=0,
        description="JOBS sequence of the attempt's job.dispatched (local pool): the worker's job.succeeded or "
        "job.failed is stored only while that is still the job's latest dispatch, so an attempt superseded while "
        "its host was cut off cannot end the job a second time. 0: no fence (Modal: dispatched after the spawn).",
    )
    trace: dict[str, str] = Field(
        default_factory=dict,
        description="W3C trace context of the attempt (traceparent, tracestate): the worker's span joins the "
        "job's trace and its events carry it on (NATS headers, or the ingest route's HTTP headers).",
    )


class Outcome(Contract):
    """How a run ended, reported back to the dispatcher."""

    status: Literal["succeeded", "permanent", "retryable"]
    result: JsonObject = Field(default_factory=dict)
    artifacts: tuple[Artifact, ...] = ()
    error: JobError | None = None
