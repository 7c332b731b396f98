"""Resuming a live session on a new attempt after its worker was lost (SIGKILL, a lost node, a preemption).

A workload that can resume says so with :func:`resumable` and hands its state with its snapshots:
``ctx.session.snapshot(data, seq=..., state={...})``. After the snapshot's bytes are stored, the runtime
writes the slot's *resume point* beside them (``live/{slot}-resume.json``, :class:`ResumePoint`): the
snapshot (its key and sha256), the last frame it covers, where the feed's streams stand
(:mod:`modal_workers.runtime.session_marks`), the counters and the workload's ``state``. Written after
the bytes, it is the slot's commit mark: a worker lost in between leaves the other slot's point the
newest complete one.

A later attempt of the session (:func:`load_resume_point`) reads both slots' points and takes the newest
whose snapshot is intact; the runtime restores the input (the feed resumes after the point's stream
sequences, so the frames sent after the snapshot are replayed before live ones, each once) and the
workload finds the point in ``ctx.session.resume_point`` (``None``: start afresh, nothing was
snapshotted). A workload that is not resumable fails such an attempt with ``worker_lost``, as a lost
worker always did.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ConfigDict, Field, ValidationError

from contracts.base import Contract, JsonObject
from contracts.job_record import Artifact

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
SLOTS = 2
"""Snapshot slots (the newest snapshot and the one before it); one resume point per slot."""
RESUME_NAME = "resume.json"
MAX_STATE_BYTES = 1024 * 1024
"""Largest workload state a resume point holds (as JSON); bigger state belongs in the snapshot's bytes."""


def resumable(workload: F) -> F:
    """Mark ``workload`` as one that resumes a session from its latest snapshot after a lost worker."""
    workload.resumable = True  # type: ignore[attr-defined]
    return workload


def is_resumable(workload: Any) -> bool:
    """Whether ``workload`` was marked with :func:`resumable`."""
    return getattr(workload, "resumable", False) is True


def slot_name(number: int, name: str) -> str:
    """The storage name of snapshot ``number``'s ``name`` (``live/{slot}-{name}``)."""
    return f"live/{number % SLOTS}-{name}"


class ResumePoint(Contract):
    """Where a session stood at one of its snapshots: what a later attempt restores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: int = Field(ge=1, description="The snapshot's number in the session (its slot: number % 2).")
    snapshot: Artifact
    seq: int = Field(ge=0, description="The last frame the snapshot covers.")
    frames_after: int = Field(ge=0, description="The FRAMES stream sequence a later attempt's feed resumes after.")
    joints_after: int = Field(ge=0, description="The TELEMETRY stream sequence it resumes the joints after.")
    results: int = Field(ge=0, description="Results numbered so far.")
    frames_processed: int = Field(default=0, ge=0)
    frames_dropped: int = Field(default=0, ge=0)
    state: JsonObject = Field(default_factory=dict, description="The workload's own state.")


def save_resume_point(host: Any, point: ResumePoint) -> None:
    """Store ``point`` in its snapshot's slot (after the snapshot's bytes: its commit mark)."""
    body = point.model_dump_json().encode()
    if len(body) > MAX_STATE_BYTES:
        raise ValueError(f"a session's resume state is limited to {MAX_STATE_BYTES} bytes ({len(body)})")
    host.store(slot_name(point.number, RESUME_NAME), body, "application/json")


def load_resume_point(host: Any) -> tuple[ResumePoint | None, bytes | None]:
    """The newest intact resume point of this session and its snapshot's bytes (``None, None``: none).

    ``host`` is the worker context (``load_stored``). A point whose snapshot no longer matches its
    sha256 (overwritten by a snapshot whose own point was never written) is passed over.
    """
    points: list[ResumePoint] = []
    for slot in range(SLOTS):
        raw = host.load_stored(slot_name(slot, RESUME_NAME))
        if raw is None:
            continue
        try:
            points.append(ResumePoint.model_validate_json(raw))
        except ValidationError:
            log.warning("skipping an unreadable resume point in slot %d", slot)
    for point in sorted(points, key=lambda p: p.number, reverse=True):
        data = host.load_stored(point.snapshot.name)
        if data is not None and hashlib.sha256(data).hexdigest() == point.snapshot.sha256:
            return point, data
        log.warning("resume point %d: its snapshot was overwritten; trying an older one", point.number)
    return None, None
