"""A replay's comparison with the session it replayed: ``comparison.json``, an artifact of the replay.

``POST /v1/sessions/{id}/replay`` starts a session fed from ``id``'s recording with other params (or
another model); when it ends, its worker compares both recordings and stores :class:`SessionComparison`
as ``comparison.json``. Each run's :class:`RunFigures` come from its recording: frames/s from the times
the worker took its first and last frame, time to the first snapshot from when the worker started.

* splat: ``gaussians`` (the last snapshot's count) and ``psnr``: the last snapshot rendered at the
  frames listed in ``eval_seqs`` against those frames (the same frames for both runs; ``held_out``
  when the replay kept them out of its training, ``params.holdout_every``).
* vlm: each chunk's answers side by side (:class:`ChunkPair`), latency p50 / p99, alerts fired.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from contracts.base import Contract, JsonObject

_STRICT = ConfigDict(extra="forbid", frozen=True)
MAX_COMPARED_CHUNKS = 10_000
MAX_EVAL_FRAMES = 64


class RunFigures(Contract):
    """One run's figures, from its recording."""

    model_config = _STRICT

    session_id: str = Field(min_length=1, max_length=64)
    params: JsonObject = Field(default_factory=dict)
    frames: int = Field(ge=0, description="Frames the worker took.")
    frames_per_s: float | None = Field(default=None, ge=0, description="Between its first and last frame.")
    time_to_first_snapshot_s: float | None = Field(default=None, description="From the worker's start.")
    snapshots: int = Field(default=0, ge=0)
    results: int = Field(default=0, ge=0)
    alerts: int = Field(default=0, ge=0, description="Alerts fired.")
    gaussians: int | None = Field(default=None, ge=0, description="splat: the last snapshot's Gaussians.")
    psnr: float | None = Field(default=None, description="splat: dB over eval_seqs (None: no snapshot or pose).")
    latency_ms_p50: float | None = Field(default=None, ge=0, description="vlm: the chunks' latency, median.")
    latency_ms_p99: float | None = Field(default=None, ge=0)


class ChunkPair(Contract):
    """vlm: one chunk's answer in both runs (``None``: that run had no such chunk)."""

    model_config = _STRICT

    chunk: int = Field(ge=1)
    first_seq: int = Field(ge=1)
    last_seq: int = Field(ge=1)
    original: str | None = None
    replay: str | None = None
    original_alert: bool = False
    replay_alert: bool = False


class SessionComparison(Contract):
    """``comparison.json``: a replay against the session it replayed."""

    model_config = _STRICT

    kind: str = Field(min_length=1, max_length=64)
    original: RunFigures
    replay: RunFigures
    eval_seqs: list[int] = Field(default_factory=list, max_length=MAX_EVAL_FRAMES, description="splat: PSNR frames.")
    held_out: bool = Field(default=False, description="splat: the replay kept eval_seqs out of its training.")
    chunks: list[ChunkPair] = Field(default_factory=list, max_length=MAX_COMPARED_CHUNKS, description="vlm.")
    created_at: float = Field(description="UNIX seconds.")
