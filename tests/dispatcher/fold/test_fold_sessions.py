"""The fold of a live session's readiness and resumes: ``live`` only once the running attempt's workload is
ready, ``starting`` again while a later attempt resumes it, each resume counted once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from contracts.envelope import EventEnvelope
from contracts.events import jobs as je
from contracts.events import sessions as se
from contracts.events.registry import EventType, make_event
from contracts.job_parts import JobStatus, SessionState
from contracts.specs.jobs import parse_job_spec
from services.dispatcher.fold.records import fold

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
E = EventType
SPEC = parse_job_spec({"kind": "vlm", "params": {}})


def ev(type_: EventType, payload: BaseModel, second: float, attempt: int | None = 1) -> EventEnvelope:
    return make_event(
        type_, payload, tenant="acme", source="test", job_id="job_1", kind="vlm", attempt=attempt,
        time=T0 + timedelta(seconds=second),
    )  # fmt: skip


def running(attempt: int, second: float) -> list[EventEnvelope]:
    dispatched = je.JobDispatchedPayload(backend="local", function="vlm", call_id=f"c{attempt}")
    return [
        ev(E.JOB_DISPATCHED, dispatched, second, attempt),
        ev(E.JOB_STARTED, je.JobStartedPayload(worker="w"), second + 1, attempt),
    ]


def ready(attempt: int, second: float, resumable: bool = True) -> EventEnvelope:
    payload = se.SessionReadyPayload(attempt=attempt, load_s=2.5, frames_held=3, resumable=resumable)
    return ev(E.SESSION_READY, payload, second, attempt)


def resumed(attempt: int, second: float) -> EventEnvelope:
    payload = se.SessionResumedPayload(attempt=attempt, from_seq=4, frames_replayed=2, frames_lost=0, gap_s=1.0)
    return ev(E.SESSION_RESUMED, payload, second, attempt)


START = [
    ev(E.JOB_CREATED, je.JobCreatedPayload(spec=SPEC, max_attempts=3), 0, None),
    ev(E.JOB_QUEUED, je.JobQueuedPayload(), 1),
    *running(1, 2),
]
LOST = ev(E.JOB_RETRYING, je.JobRetryingPayload(reason="worker_lost", message="", next_attempt=2), 10)


def test_a_running_session_is_starting_until_its_workload_is_ready() -> None:
    record = fold(START)
    assert record is not None
    assert (record.status, record.session_state) == (JobStatus.RUNNING, SessionState.STARTING)
    record = fold([*START, ready(1, 5)])
    assert record is not None
    assert record.session is not None
    assert record.session_state is SessionState.LIVE
    assert (record.session.ready_attempt, record.session.load_s, record.session.resumable) == (1, 2.5, True)
    assert record.session.ready_at == T0 + timedelta(seconds=5)


def test_a_resumed_session_is_starting_again_until_the_new_attempt_is_ready_and_counts_one_resume() -> None:
    between = fold([*START, ready(1, 5), LOST, *running(2, 12)])
    assert between is not None
    assert (between.attempt, between.session_state) == (2, SessionState.STARTING)
    again = [*START, ready(1, 5), LOST, *running(2, 12), resumed(2, 15), resumed(2, 15), ready(2, 16), ready(2, 16)]
    record = fold(again)
    assert record is not None
    assert record.session is not None
    assert record.session_state is SessionState.LIVE
    assert (record.session.resumes, record.session.resumed_attempt, record.session.ready_attempt) == (1, 2, 2)


def test_the_lost_attempts_late_ready_does_not_make_the_next_one_live() -> None:
    record = fold([*START, LOST, *running(2, 12), ready(1, 13)])
    assert record is not None
    assert record.session is not None
    assert (record.session_state, record.session.ready_attempt) == (SessionState.STARTING, 0)
