"""The job record as a pure fold of the JOBS stream's events.

:func:`apply` moves a record by one event, only through the contracts' state machine, and is
idempotent (applying an event twice changes nothing), so a redelivered event is harmless; in a history
the platform writes (each attempt's events after its dispatch), a run of events folded again after
later ones changes nothing either (``tests/dispatcher/fold/test_fold_redelivery.py``).
:func:`fold` applies a job's events in stream order from nothing: the dispatcher writes exactly
what :func:`fold` computes, so KV ``jobs`` can be rebuilt from the stream at any time.

Every timestamp comes from the envelopes (never the clock), so the fold is deterministic. Cost is
the GPU time of each ended attempt (from its ``dispatched`` to its end) priced by ``pricing``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from pydantic import BaseModel, ValidationError

from contracts.envelope import EventEnvelope
from contracts.events import jobs as je
from contracts.events import sessions as se
from contracts.events.registry import parse_payload
from contracts.job_parts import (
    Artifact,
    JobCost,
    JobError,
    JobStatus,
    QueuePlace,
    StageState,
    StageStatus,
    can_transition,
)
from contracts.job_record import JobRecord
from contracts.specs.jobs import JobKind

Pricing = Callable[[str, str | None], float]
"""USD per GPU-hour of a kind on a GPU (``None``: no GPU)."""

_S = JobStatus
_LIVE = (_S.DISPATCHED, _S.RUNNING)


def no_pricing(kind: str, gpu: str | None) -> float:
    """Every GPU-hour free: the default pricing."""
    return 0.0


def _sorted(artifacts: Iterable[Artifact]) -> tuple[Artifact, ...]:
    by_name = {a.name: a for a in artifacts}
    return tuple(by_name[name] for name in sorted(by_name))


def _attempt_cost(record: JobRecord, at: datetime, pricing: Pricing) -> JobCost:
    """The cost with the current attempt's GPU time, from its dispatch to ``at``, added."""
    began = record.timings.dispatched_at
    if record.status not in _LIVE or began is None:
        return record.cost
    seconds = max(0.0, (at - began).total_seconds())
    usd = seconds * pricing(record.kind, record.cost.gpu) / 3600.0
    return record.cost.model_copy(
        update={
            "gpu_seconds": round(record.cost.gpu_seconds + seconds, 6),
            "estimated_usd": round(record.cost.estimated_usd + usd, 9),
        }
    )


def _start_attempt(record: JobRecord, attempt: int, at: datetime) -> JobRecord:
    """``queued`` (same attempt) or ``retrying`` (next attempt) → ``dispatched``; else unchanged."""
    if record.status is _S.QUEUED and attempt == record.attempt:
        return record.transition(_S.DISPATCHED, at)
    if record.status is _S.RETRYING and attempt == record.attempt + 1 and record.attempts_left > 0:
        return record.transition(_S.DISPATCHED, at)
    return record


def _waiting(record: JobRecord, attempt: int) -> bool:
    """Whether ``attempt`` of ``record`` waits in its kind's queue (``queued``, or ``retrying`` to it)."""
    return (record.status is _S.QUEUED and attempt == record.attempt) or (
        record.status is _S.RETRYING and attempt == record.attempt + 1
    )


def _ended_attempt(record: JobRecord, attempt: int, payload: BaseModel) -> bool:
    """Whether ``payload`` is of an attempt that ended in ``retrying`` and must be ignored: the attempt's
    progress already is, so its stages and artifacts are too (else a redelivery of them, after the
    attempt's later progress, would move the record again); a stage's ``failed`` still closes a stage
    left running, as on a terminal record."""
    if record.status is not _S.RETRYING or attempt != record.attempt:
        return False
    if isinstance(payload, je.JobStagePayload) and payload.status is StageStatus.FAILED:
        return any(s.index == payload.index and s.status is not StageStatus.RUNNING for s in record.stages)
    return isinstance(payload, je.JobStagePayload | je.JobArtifactPayload | je.JobHeartbeatPayload)


def _end(record: JobRecord, target: JobStatus, at: datetime, pricing: Pricing, **kw: object) -> JobRecord:
    if not can_transition(record.status, target):
        return record
    return record.transition(target, at, cost=_attempt_cost(record, at, pricing), **kw)  # type: ignore[arg-type]


def _apply_payload(record: JobRecord, event: EventEnvelope, payload: BaseModel, pricing: Pricing) -> JobRecord:
    at, attempt = event.time, event.attempt or record.attempt
    current = attempt == record.attempt
    if _ended_attempt(record, attempt, payload):
        return record
    match payload:
        case je.JobQueuedPayload() if record.status is _S.CREATED:
            queued = record.transition(_S.QUEUED, at)
            if payload.position is None:
                return queued
            place = QueuePlace(position=payload.position, eta_s=payload.eta_s, eta_at=payload.eta_at)
            return queued.model_copy(update={"queue": place})
        case je.JobDispatchedPayload():
            moved = _start_attempt(record, attempt, at)
            if moved is record:
                return record
            price = pricing(record.kind, payload.gpu)
            cost = moved.cost.model_copy(update={"gpu": payload.gpu, "usd_per_gpu_hour": price})
            dispatched = moved.with_dispatch(payload.backend, payload.call_id, at)
            return dispatched.model_copy(update={"cost": cost, "queue": None})
        case je.JobPositionPayload() if _waiting(record, attempt):
            place = QueuePlace(position=payload.position, eta_s=payload.eta_s, eta_at=payload.eta_at)
            return record.model_copy(update={"queue": place, "updated_at": max(record.updated_at, at)})
        case je.JobStartedPayload():
            moved = _start_attempt(record, attempt, at)
            if moved.status is _S.DISPATCHED and attempt == moved.attempt:
                return moved.transition(_S.RUNNING, at)
            return moved
        case je.JobProgressPayload():
            return record.with_progress(attempt, payload.fraction, payload.stage, payload.message, at, payload.metrics)
        case je.JobArtifactPayload():
            moved = record.with_artifact(attempt, payload.to_artifact(), at)
            return moved if moved is record else moved.model_copy(update={"artifacts": _sorted(moved.artifacts)})
        case je.JobHeartbeatPayload():
            if record.heartbeat_at is not None and at <= record.heartbeat_at:
                return record
            return record.with_heartbeat(attempt, at)
        case je.JobStagePayload():
            state = StageState(name=payload.name, index=payload.index, count=payload.count, status=payload.status)
            return record.with_stage(attempt, state, at)
        case je.JobCancelRequestedPayload():
            return record.with_cancel_requested(at)
        case je.JobRetryingPayload() if current and record.status in _LIVE:
            error = JobError(code=payload.reason, message=payload.message, retryable=True)
            return _end(record, _S.RETRYING, at, pricing, error=error)
        case je.JobSucceededPayload() if current and record.status in _LIVE:
            artifacts = _sorted((*record.artifacts, *payload.artifacts))
            ended = _end(record, _S.SUCCEEDED, at, pricing, result=payload.result)
            return ended.model_copy(update={"artifacts": artifacts})
        case je.JobFailedPayload() if current:
            return _end(record, _S.FAILED, at, pricing, error=payload.error)
        case je.JobCanceledPayload():
            error = JobError(code="canceled", message=payload.reason or "canceled on request")
            return _end(record, _S.CANCELED, at, pricing, error=error)
    return _apply_session(record, payload, at, current)


def _apply_session(record: JobRecord, payload: BaseModel, at: datetime, current: bool) -> JobRecord:
    """A live session's own events; each keeps the latest (so a repeat changes nothing)."""
    info = record.session
    if info is None:
        return record
    match payload:
        case se.SessionReadyPayload() if current and payload.attempt == record.attempt > info.ready_attempt:
            ready = {"ready_attempt": payload.attempt, "ready_at": at, "load_s": payload.load_s}
            return record.with_session(at, **ready, resumable=payload.resumable)
        case se.SessionResumedPayload() if current and payload.attempt == record.attempt > info.resumed_attempt:
            return record.with_session(at, resumes=info.resumes + 1, resumed_attempt=payload.attempt)
        case se.SessionStopRequestedPayload():
            return record if info.stop_requested else record.with_session(at, stop_requested=True)
        case se.SessionSnapshotPayload() if current and payload.seq >= info.snapshot_seq:
            return record.with_session(at, snapshot=payload.artifact, snapshot_seq=payload.seq)
        case se.SessionResultPayload() if current and payload.chunk > info.last_result_chunk:
            return record.with_session(at, last_result_chunk=payload.chunk, last_result_seq=payload.last_seq)
        case se.SessionAlertPayload() if current and payload.chunk > info.last_alert_chunk:
            return record.with_session(at, last_alert_chunk=payload.chunk)
    return record


def apply(record: JobRecord | None, event: EventEnvelope, pricing: Pricing = no_pricing) -> JobRecord | None:
    """``record`` moved by one job event; the same object back when the event changes nothing.

    ``job.created`` makes the first record; any other event before it is ignored (``None``
    stays ``None``). Events of another attempt, illegal moves and malformed payloads are ignored.
    """
    if not event.type.startswith(("job.", "session.")):
        return record
    try:
        payload = parse_payload(event)
    except (ValidationError, ValueError):
        return record
    if isinstance(payload, je.JobCreatedPayload):
        if record is not None or event.job_id is None:
            return record
        return JobRecord.new(
            event.job_id, event.tenant, payload.spec, event.time, payload.max_attempts, subject=payload.subject
        )
    if record is None or event.job_id != record.id:
        return record
    moved = _apply_payload(record, event, payload, pricing)
    if moved is record or moved == record:
        return record
    # updated_at never goes back, whatever the event's own time.
    return moved.model_copy(update={"updated_at": max(record.updated_at, moved.updated_at)})


def fold(events: Iterable[EventEnvelope], pricing: Pricing = no_pricing) -> JobRecord | None:
    """The record that a job's events, in stream order, make from nothing (``None``: no created)."""
    record: JobRecord | None = None
    for event in events:
        record = apply(record, event, pricing)
    return record


def route_pricing(prices: dict[str, float]) -> Pricing:
    """A :data:`Pricing` from a kind → USD-per-GPU-hour map (the route table's prices)."""

    def price(kind: str, gpu: str | None) -> float:
        return prices.get(str(JobKind(kind)), 0.0)

    return price
