"""Settings the runtime reads in a live session's worker: its recording (``GPURELAY_RECORDING_*``) and its
source (``GPURELAY_SESSION_SOURCE_*``). How long a recording is kept is the dispatcher's
(``GPURELAY_RECORDING_RETENTION_HOURS``, with the retention sweep)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RecordingSettings(BaseSettings):
    """How a session's worker records it (:mod:`modal_workers.runtime.recording.writer`)."""

    model_config = SettingsConfigDict(env_prefix="GPURELAY_RECORDING_", extra="ignore", frozen=True)

    enabled: bool = Field(default=True, description="Record every session (frames, joints, control, outputs).")
    flush_every_s: float = Field(
        default=10.0, gt=0, le=3600, description="The manifest is rewritten at most this often while the session runs."
    )
    snapshot_every_s: float = Field(
        default=30.0, ge=0, le=86_400,
        description="A snapshot is kept at most this often (the first and the last always): a splat's PLY is large.",
    )  # fmt: skip
    pending_writes: int = Field(
        default=32, ge=1, le=1024, description="Frame copies being stored at once; the workload waits for more."
    )


class SourceSettings(BaseSettings):
    """Bounds of a session fed from a dataset (:mod:`modal_workers.runtime.recording.source`)."""

    model_config = SettingsConfigDict(env_prefix="GPURELAY_SESSION_SOURCE_", extra="ignore", frozen=True)

    max_entries: int = Field(default=20_000, ge=1, le=10_000_000, description="Files an unpacked dataset may hold.")
    max_unpacked_bytes: int = Field(default=8 * 1024**3, ge=1, description="Bytes a dataset may unpack to.")
    publish_timeout_s: float = Field(default=30.0, gt=0, le=600, description="One frame's publication, at most.")
