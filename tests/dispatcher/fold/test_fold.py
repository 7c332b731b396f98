"""The fold on its own: a pure function of the events, through the state machine only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from contracts.envelope import EventEnvelope
from contracts.events import jobs as je
from contracts.events.registry import EventType, make_event
from contracts.job_parts import Artifact, JobError, JobStatus, StageStatus
from contracts.specs.jobs import parse_job_spec
from services.dispatcher.fold.records import apply, fold, route_pricing
from tests.support.dispatcher import POSE

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
S, E = JobStatus, EventType
SPEC = parse_job_spec(POSE)
ART = Artifact(name="out.txt", key="results/acme/job_1/out.txt", size=5)


def ev(type_: EventType, payload: BaseModel, second: float, attempt: int | None = 1) -> EventEnvelope:
    return make_event(
        type_,
        payload,
        tenant="acme",
        source="test",
        job_id="job_1",
        kind="pose",
        attempt=attempt,
        time=T0 + timedelta(seconds=second),
    )


def created(second: float = 0) -> EventEnvelope:
    return ev(E.JOB_CREATED, je.JobCreatedPayload(spec=SPEC, max_attempts=3), second, None)


def happy(attempt_offset: float = 0) -> list[EventEnvelope]:
    return [
        created(),
        ev(E.JOB_QUEUED, je.JobQueuedPayload(), 1),
        ev(
            E.JOB_DISPATCHED,
            je.JobDispatchedPayload(backend="local", function="pose", gpu="T4", call_id="c1"),
            2,
        ),
        ev(E.JOB_STARTED, je.JobStartedPayload(worker="w"), 3),
        ev(E.JOB_PROGRESS, je.JobProgressPayload(fraction=0.5), 4),
        ev(E.JOB_ARTIFACT, je.JobArtifactPayload.model_validate(ART.model_dump()), 5),
        ev(E.JOB_SUCCEEDED, je.JobSucceededPayload(result={"n": 1}, artifacts=(ART,)), 12),
    ]


def test_a_happy_job_folds_to_succeeded_with_timings_and_cost() -> None:
    record = fold(happy(), route_pricing({"pose": 3.6}))
    assert record is not None
    assert record.status is S.SUCCEEDED
    assert record.result == {"n": 1}
    assert record.artifacts == (ART,)
    assert record.progress.fraction == 1.0
    assert record.timings.dispatched_at == T0 + timedelta(seconds=2)
    assert record.timings.finished_at == T0 + timedelta(seconds=12)
    assert (record.cost.gpu_seconds, record.cost.gpu) == (10.0, "T4")
    assert record.cost.estimated_usd == 0.01
    assert record.call_id == "c1"
    assert record.updated_at == T0 + timedelta(seconds=12)


def test_nothing_before_created_and_other_jobs_are_ignored() -> None:
    assert fold(happy()[1:]) is None
    other = make_event(E.JOB_QUEUED, je.JobQueuedPayload(), tenant="acme", source="t", job_id="job_2")
    record = fold([created(), other])
    assert record is not None
    assert record.status is S.CREATED


def test_retry_starts_attempt_2_and_events_of_attempt_1_are_ignored() -> None:
    events = [
        *happy()[:5],
        ev(E.JOB_RETRYING, je.JobRetryingPayload(reason="worker_lost", next_attempt=2, delay_s=1), 6),
        ev(E.JOB_SUCCEEDED, je.JobSucceededPayload(), 6.5, attempt=1),  # a late event of attempt 1
        ev(E.JOB_DISPATCHED, je.JobDispatchedPayload(backend="local", function="pose"), 8, attempt=2),
        ev(E.JOB_PROGRESS, je.JobProgressPayload(fraction=0.9), 8.5, attempt=1),
        ev(E.JOB_STARTED, je.JobStartedPayload(worker="w2"), 9, attempt=2),
        ev(E.JOB_PROGRESS, je.JobProgressPayload(fraction=0.2), 10, attempt=2),
    ]
    record = fold(events)
    assert record is not None
    assert (record.status, record.attempt, record.progress.fraction) == (S.RUNNING, 2, 0.2)
    assert record.cost.gpu_seconds == 4.0  # attempt 1: dispatched at 2 s, retrying at 6 s


def test_started_before_dispatched_still_runs_the_attempt() -> None:
    events = [
        created(),
        ev(E.JOB_QUEUED, je.JobQueuedPayload(), 1),
        ev(E.JOB_STARTED, je.JobStartedPayload(worker="w"), 2),
    ]
    record = fold(events)
    assert record is not None
    assert record.status is S.RUNNING
    assert record.timings.dispatched_at is not None


def test_cancel_and_failure_end_the_job_and_terminal_never_changes() -> None:
    canceled = fold([*happy()[:4], ev(E.JOB_CANCELED, je.JobCanceledPayload(), 5), *happy()[4:]])
    assert canceled is not None
    assert canceled.status is S.CANCELED
    assert canceled.result is None
    error = JobError(code="bad_video", message="not a video")
    failed = fold([*happy()[:4], ev(E.JOB_FAILED, je.JobFailedPayload(error=error), 5)])
    assert failed is not None
    assert failed.status is S.FAILED
    assert failed.error == error


def test_stage_events_are_recorded() -> None:
    stage = je.JobStagePayload(name="train", index=1, count=3, status=StageStatus.RUNNING)
    record = fold([*happy()[:4], ev(E.JOB_STAGE, stage, 5)])
    assert record is not None
    assert record.stage == "train"
    assert record.stages[0].status is StageStatus.RUNNING


# -- properties ---------------------------------------------------------------------------------

_PAYLOADS: dict[EventType, Any] = {
    E.JOB_QUEUED: lambda a: je.JobQueuedPayload(),
    E.JOB_DISPATCHED: lambda a: je.JobDispatchedPayload(backend="local", function="f", call_id=f"c{a}"),
    E.JOB_STARTED: lambda a: je.JobStartedPayload(worker="w"),
    E.JOB_PROGRESS: lambda a: je.JobProgressPayload(fraction=(a % 10) / 10),
    E.JOB_HEARTBEAT: lambda a: je.JobHeartbeatPayload(),
    E.JOB_ARTIFACT: lambda a: je.JobArtifactPayload(name=f"f{a}.txt", key=f"k{a}", size=a),
    E.JOB_RETRYING: lambda a: je.JobRetryingPayload(reason="worker_lost", next_attempt=2, delay_s=0),
    E.JOB_CANCEL_REQUESTED: lambda a: je.JobCancelRequestedPayload(),
    E.JOB_SUCCEEDED: lambda a: je.JobSucceededPayload(result={"a": a}),
    E.JOB_FAILED: lambda a: je.JobFailedPayload(error=JobError(code="boom")),
    E.JOB_CANCELED: lambda a: je.JobCanceledPayload(),
}
steps = st.lists(st.tuples(st.sampled_from(sorted(_PAYLOADS)), st.integers(1, 3), st.integers(0, 9)), max_size=25)


def build(items: list[tuple[EventType, int, int]]) -> list[EventEnvelope]:
    events = [created()]
    for i, (type_, attempt, n) in enumerate(items):
        events.append(ev(type_, _PAYLOADS[type_](n), i + 1, attempt))
    return events


@settings(max_examples=300, deadline=None)
@given(steps)
def test_fold_is_deterministic_idempotent_and_terminal_is_final(
    items: list[tuple[EventType, int, int]],
) -> None:
    events = build(items)
    record = fold(events)
    assert record == fold(events)
    doubled = [e for event in events for e in (event, event)]
    assert fold(doubled) == record  # a redelivered event changes nothing
    state = None
    for event in events:
        before = state
        state = apply(state, event)
        assert state is not None
        assert state.attempt <= state.max_attempts
        if before is not None and before.terminal:
            assert (state.status, state.result, state.error) == (before.status, before.result, before.error)
        if before is not None and before.attempt == state.attempt and not state.terminal:
            assert state.progress.fraction >= before.progress.fraction
