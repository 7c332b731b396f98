"""Payloads of live-session events (``splat`` and ``vlm`` sessions).

A session is a job of a session kind, so its events travel on the job's subjects
(``jobs.{tenant}.{session_id}.{name}``) beside its job events: they reach SSE, webhooks and the
session's WebSocket like any other, and the envelope's ``job_id`` is the session id. Frame ``seq``
numbers start at 1 per session and are the numbering acks, results and status use.

- ``session.stop_requested`` (the gateway): the client asked the session to finish.
- ``session.snapshot`` (the worker): a new live output (e.g. the latest PLY) was written.
- ``session.result`` (the worker): one result of the running session (e.g. a VLM chunk's answer).
- ``session.alert`` (the worker): a result matched the session's alert.
- ``session.ready`` (the worker): its workload is ready; the session is ``live`` from then on.
- ``session.resumed`` (the worker): a new attempt resumed the session after its worker was lost.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from contracts.base import Contract, JsonObject
from contracts.job_parts import Artifact

_STRICT = ConfigDict(extra="forbid", frozen=True)
MAX_RESULT_TEXT = 16_000
"""Longest text one result or alert carries."""


class SessionStopRequestedPayload(Contract):
    """``session.stop_requested``: finish the session (final outputs, then ``job.succeeded``)."""

    model_config = _STRICT

    reason: str | None = Field(default=None, max_length=500)


class SessionSnapshotPayload(Contract):
    """``session.snapshot``: a live output was written; it covers the frames up to ``seq``."""

    model_config = _STRICT

    artifact: Artifact
    seq: int = Field(ge=0, description="The last frame the snapshot includes (0: none yet).")
    frames: int = Field(default=0, ge=0, description="Frames the session's worker has used so far.")


class SessionResultPayload(Contract):
    """``session.result``: one result over frames ``first_seq..last_seq`` (e.g. a chunk's answer)."""

    model_config = _STRICT

    chunk: int = Field(ge=1, description="The result's number in the session, from 1.")
    first_seq: int = Field(ge=1)
    last_seq: int = Field(ge=1)
    text: str | None = Field(default=None, max_length=MAX_RESULT_TEXT)
    tokens: int | None = Field(default=None, ge=0)
    latency_ms: float | None = Field(default=None, ge=0)
    data: JsonObject = Field(default_factory=dict, description="Workload-specific fields.")

    @model_validator(mode="after")
    def _range(self) -> SessionResultPayload:
        if self.last_seq < self.first_seq:
            raise ValueError("last_seq must not be below first_seq")
        return self


class SessionAlertPayload(Contract):
    """``session.alert``: result ``chunk`` matched the session's alert ``pattern``."""

    model_config = _STRICT

    chunk: int = Field(ge=1)
    first_seq: int = Field(ge=1)
    last_seq: int = Field(ge=1)
    pattern: str = Field(min_length=1, max_length=256)
    message: str = Field(min_length=1, max_length=500)
    text: str | None = Field(default=None, max_length=MAX_RESULT_TEXT)


class SessionReadyPayload(Contract):
    """``session.ready``: the workload of attempt ``attempt`` is ready (model loaded, trainer built); the
    session is ``live`` and the frames held while it started are being processed."""

    model_config = _STRICT

    attempt: int = Field(ge=1, description="The attempt whose workload is ready.")
    load_s: float = Field(ge=0, description="Seconds from the attempt's start to ready (loading, restoring).")
    frames_held: int = Field(default=0, ge=0, description="Frames that arrived while it started, now processed.")
    resumable: bool = Field(default=False, description="Whether a lost worker of this session resumes it.")


class SessionResumedPayload(Contract):
    """``session.resumed``: a new attempt took over a session whose worker was lost, from its latest
    snapshot (frames up to ``from_seq``), replaying the frames sent after it."""

    model_config = _STRICT

    attempt: int = Field(ge=2, description="The attempt that resumed the session.")
    from_seq: int = Field(ge=0, description="The last frame the restored snapshot covers (0: none, a fresh start).")
    frames_replayed: int = Field(ge=0, description="Frames after the snapshot read back from the log.")
    frames_lost: int = Field(
        ge=0, description="Frames after the snapshot that the log no longer held (or that overflowed the hold)."
    )
    gap_s: float = Field(ge=0, description="Seconds from the lost worker's end to this attempt's ready.")
