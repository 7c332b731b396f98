"""Where a session's recording lies in storage: under ``recording/`` in the session's results.

=====================================  ===============================================================
``recording/manifest.json``            :class:`RecordingHead`: the manifest without its frames, and
                                       how many index files hold them (rewritten as the session runs)
``recording/index/NNNNNN.jsonl``       the frames' entries (:class:`~contracts.recordings.RecordedFrame`,
                                       one JSON object a line), :data:`INDEX_FRAMES` a file: every file
                                       but the last is full and never rewritten
``recording/frames/<camera>/N.jpg``    each frame's stored copy (``.png`` for a PNG), ``N`` its seq
``recording/snapshots/N-<name>``       the snapshots the recording keeps (their own keys: the live
                                       snapshot alternates two slots)
=====================================  ===============================================================

Names here are relative to the session's results (``results/{tenant}/{session}/``): a manifest's
``key`` is one of them, so a recording names nothing outside its session. The worker writes the
files (``modal_workers/runtime/recording/writer.py``); the gateway's ``GET /v1/sessions/{id}/recording``,
the export job and a replay read them back with :func:`assemble`.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from contracts.base import Contract
from contracts.recordings.manifest import RecordedFrame, RecordingManifest

RECORDING_DIR = "recording"
"""The recording's folder in the session's results (retention removes it on its own clock)."""
HEAD_NAME = f"{RECORDING_DIR}/manifest.json"
INDEX_FRAMES = 1000
"""Frame entries per index file."""


class RecordingHead(Contract):
    """``recording/manifest.json``: the manifest less its frames, and where the frames' entries are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest: RecordingManifest = Field(description="Everything but the frames (its frames list is empty).")
    frame_count: int = Field(default=0, ge=0, description="Frames listed in the index files.")
    index_files: int = Field(default=0, ge=0, description="recording/index/000001.jsonl … this many.")


def index_name(number: int) -> str:
    """The ``number``-th index file (from 1)."""
    return f"{RECORDING_DIR}/index/{number:06d}.jsonl"


def frame_name(camera: str, seq: int, content_type: str) -> str:
    """A frame's stored copy."""
    return f"{RECORDING_DIR}/frames/{camera}/{seq:08d}.{'png' if content_type == 'image/png' else 'jpg'}"


def snapshot_name(number: int, name: str) -> str:
    """The ``number``-th kept snapshot (``name`` as the workload gave it, folders flattened)."""
    return f"{RECORDING_DIR}/snapshots/{number:06d}-{name.replace('/', '_')}"


def index_lines(frames: list[RecordedFrame]) -> bytes:
    """An index file's bytes."""
    return b"".join(frame.model_dump_json(exclude_none=True).encode() + b"\n" for frame in frames)


def parse_index(data: bytes) -> list[RecordedFrame]:
    """An index file's frames (``pydantic.ValidationError`` for a malformed line)."""
    return [RecordedFrame.model_validate_json(line) for line in data.splitlines() if line.strip()]


def assemble(head: RecordingHead, indexes: list[bytes]) -> RecordingManifest:
    """The whole manifest: the head's with the frames of its index files, in order."""
    frames = [frame for data in indexes for frame in parse_index(data)]
    return RecordingManifest.model_validate({**head.manifest.model_dump(), "frames": frames})
