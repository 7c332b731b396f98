"""Live-session API bodies (``/v1/sessions``), the session socket's frame description, and the gateway's
per-session KV entry.

A session is a job of a session kind (splat, vlm): it has a job id, a job record, and everything
jobs have (routing, cost, cancel, retention, SSE, webhooks). :data:`SessionCreate` is the session
specs' union, ``{kind, params, robot_id?, webhook?}``, its errors located at body fields as jobs' are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Discriminator, Field, WrapValidator

from contracts.api.jobs import field_locations
from contracts.base import Contract, JsonObject
from contracts.ids import IdempotencyKeyText, JobId, ResourceId, SubjectId, TenantId
from contracts.job_parts import Artifact, JobCost, JobError, JobStatus, SessionState
from contracts.specs.jobs import JobKind, SplatSpec, VlmSpec, WebhookTarget
from contracts.specs.session_source import Speed

_BODY = ConfigDict(extra="forbid")

SessionCreate = Annotated[SplatSpec | VlmSpec, Discriminator("kind"), WrapValidator(field_locations)]
"""``{kind, params, robot_id?, webhook?}``: a splat or vlm session's spec."""


class SessionUrls(Contract):
    """Where to reach a session."""

    model_config = _BODY

    self: str = Field(description="GET the session's status.")
    events: str = Field(description="SSE stream of its events; carries a short-lived token.")
    stream: str = Field(description="WebSocket: frames in (each acked at once), the session's events out.")
    frames: str = Field(description="POST one frame (image/jpeg or image/png body, or multipart field 'file').")
    stop: str = Field(description="POST: finish (final outputs, then succeeded).")
    reset: str = Field(description="POST: clear the model and counters; the session goes on.")
    cancel: str = Field(description="POST: cancel (the worker is stopped; no final outputs).")
    recording: str = Field(description="GET the recording's manifest (frames, joints, control, outputs).")
    replay: str = Field(description="POST {params}: a new session fed from this one's recording (once it ended).")
    ply: str | None = Field(default=None, description="splat: GET the latest PLY snapshot (ETag).")
    compat: str | None = Field(
        default=None, description="splat: the live-splat seed's routes under a capability URL (no other auth)."
    )


class SessionOut(Contract):
    """A session as clients see it."""

    model_config = _BODY

    id: JobId
    kind: JobKind
    status: JobStatus
    state: SessionState
    subject: SubjectId | None = Field(default=None, description="The end user whose token started it.")
    attempt: int = Field(default=1, ge=1, description="The attempt running it (a later one resumed a lost worker's).")
    ready_at: datetime | None = Field(default=None, description="When the running attempt's workload got ready.")
    load_s: float | None = Field(default=None, ge=0, description="Seconds that attempt took to get ready.")
    resumes: int = Field(default=0, ge=0, description="How many times a new attempt resumed it after a lost worker.")
    robot_id: str | None = None
    frames_received: int = Field(ge=0, description="Frames accepted by the gateway (the last seq).")
    frames_processed: int = Field(ge=0, description="Frames the worker took (its latest report).")
    frames_dropped: int = Field(ge=0, description="Frames the worker skipped to keep up (its latest report).")
    metrics: JsonObject = Field(default_factory=dict, description="The worker's latest figures.")
    snapshot: Artifact | None = Field(default=None, description="The latest live output, with a download URL.")
    artifacts: tuple[Artifact, ...] = Field(
        default=(), description="Its files so far (chunk PLYs, status.json, snapshots), each with a download URL."
    )
    result: JsonObject | None = None
    error: JobError | None = None
    cost: JobCost = Field(description="GPU time and price so far (a running session counts up to now).")
    spec: SplatSpec | VlmSpec
    created_at: datetime
    updated_at: datetime
    urls: SessionUrls


class SessionList(Contract):
    """One page of sessions, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    model_config = _BODY

    items: list[SessionOut]
    next_cursor: str | None = Field(default=None, description="None on the last page.")


class SessionReplay(Contract):
    """``POST /v1/sessions/{id}/replay``: a new session of the same kind fed from this one's recording."""

    model_config = _BODY

    params: JsonObject = Field(
        default_factory=dict,
        description="Params changed from the recorded session's (a vlm's model among them); the others are kept.",
    )
    speed: Speed = Field(default=1.0, description="1.0: recorded timing; 'max': as fast as the worker takes them.")
    webhook: WebhookTarget | None = None


class FrameAccepted(Contract):
    """A frame was accepted: its ``seq`` (from 1) and the session's frame count."""

    model_config = _BODY

    seq: int = Field(ge=1)
    frame_count: int = Field(ge=1)


class FrameMeta(Contract):
    """Session socket, client → server: ``{"type": "frame", "ts"?, "pose"?, "key"?}`` describes the next
    binary frame."""

    model_config = _BODY

    type: str = Field(pattern="^frame$")
    ts: float | None = Field(default=None, ge=0, le=1e11, description="Capture time, UNIX seconds.")
    pose: list[float] | None = Field(
        default=None, min_length=16, max_length=16, description="Camera→world, 4 × 4 row-major."
    )
    key: IdempotencyKeyText | None = Field(
        default=None,
        description="The frame's idempotency key: the frame sent again with it (its socket dropped before "
        "the ack) is acked with the seq it was stored as, within FRAMES' duplicate window (2 min).",
    )


class SessionEntry(Contract):
    """KV ``sessions`` (``{tenant}.{id}``): what the gateway keeps per session — the frame counter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: JobId
    tenant: TenantId
    kind: Literal["splat", "vlm"]
    robot_id: ResourceId
    frames: int = Field(default=0, ge=0, description="The last frame seq given out.")
    created_at: datetime
