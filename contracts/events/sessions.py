"""Payloads of live-session events (``splat`` and ``vlm`` sessions).

A session is a job of a session kind, so its events travel on the job's subjects
(``jobs.{tenant}.{session_id}.{name}``) beside its job events: they reach SSE, webhooks and the
session's WebSocket like any other, and the envelope's ``job_id`` is the session id. Frame ``seq``
numbers start at 1 per session and are the numbering acks, results and status use.

- ``session.stop_requested`` (the gateway): the client asked the session to finish.
- ``session.snapshot`` (the worker): a new live output (e.g. the latest PLY) was written.
- ``session.result`` (the worker): one result of the running session (e.g. a VLM chunk's answer).
- ``session.alert`` (the worker): a result matched the session's alert.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from contracts.base import Contract, JsonObject
from contracts.job_record import Artifact

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
