"""Payloads of live-session events (``splat`` and ``vlm`` sessions)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.ids import ResourceId
from contracts.job_record import Artifact, JobError

_STRICT = ConfigDict(extra="forbid", frozen=True)


class SessionStartedPayload(BaseModel):
    """``session.started``: the stateful worker is ready for frames."""

    model_config = _STRICT

    session_id: ResourceId
    kind: Literal["splat", "vlm"]
    worker: str | None = Field(default=None, max_length=128)


class SessionSnapshotPayload(BaseModel):
    """``session.snapshot``: a new PLY (or chunk) was written; ``frames`` seen so far."""

    model_config = _STRICT

    session_id: ResourceId
    artifact: Artifact
    frames: int = Field(ge=0)
    chunk_index: int = Field(default=0, ge=0)


class SessionStoppedPayload(BaseModel):
    """``session.stopped``: the session ended; ``error`` is set when ``reason`` is ``error``."""

    model_config = _STRICT

    session_id: ResourceId
    reason: Literal["requested", "timeout", "error"] = "requested"
    frames: int = Field(default=0, ge=0)
    error: JobError | None = None
