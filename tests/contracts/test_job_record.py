"""The job state machine: ALLOWED is the only way a record moves, terminal never changes."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.job_parts import (
    ALLOWED,
    TERMINAL,
    Artifact,
    IllegalTransitionError,
    JobCost,
    JobError,
    JobStatus,
    StageState,
    StageStatus,
    can_transition,
    check_transition,
)
from contracts.job_record import JobRecord
from tests.contracts.examples import ARTIFACT, T0, spec

S = JobStatus
ALL_PAIRS = list(itertools.product(JobStatus, JobStatus))
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if b not in ALLOWED[a]]
LEGAL = [(a, b) for a, b in ALL_PAIRS if b in ALLOWED[a]]


def record(max_attempts: int = 3) -> JobRecord:
    return JobRecord.new("job_1", "acme", spec("pose"), T0, max_attempts=max_attempts)


def walk(*path: JobStatus) -> JobRecord:
    rec = record()
    for i, target in enumerate(path):
        rec = rec.transition(target, T0 + timedelta(seconds=i + 1))
    return rec


# Shortest path from created to each status.
PATHS: dict[JobStatus, tuple[JobStatus, ...]] = {
    S.CREATED: (),
    S.QUEUED: (S.QUEUED,),
    S.DISPATCHED: (S.QUEUED, S.DISPATCHED),
    S.RUNNING: (S.QUEUED, S.DISPATCHED, S.RUNNING),
    S.RETRYING: (S.QUEUED, S.DISPATCHED, S.RUNNING, S.RETRYING),
    S.SUCCEEDED: (S.QUEUED, S.DISPATCHED, S.RUNNING, S.SUCCEEDED),
    S.FAILED: (S.FAILED,),
    S.CANCELED: (S.CANCELED,),
}


def test_table_covers_every_status_and_terminal_is_empty() -> None:
    assert set(ALLOWED) == set(JobStatus)
    assert all(not ALLOWED[t] for t in TERMINAL)
    assert all(s not in ALLOWED[s] for s in JobStatus)
    assert {S.SUCCEEDED, S.FAILED, S.CANCELED} == TERMINAL


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_every_illegal_pair_is_rejected(current: JobStatus, target: JobStatus) -> None:
    assert not can_transition(current, target)
    with pytest.raises(IllegalTransitionError) as info:
        check_transition(current, target)
    assert (info.value.current, info.value.target) == (current, target)
    rec = walk(*PATHS[current])
    assert rec.status is current
    with pytest.raises(IllegalTransitionError):
        rec.transition(target, T0 + timedelta(hours=1))


@pytest.mark.parametrize(("current", "target"), LEGAL, ids=[f"{a}->{b}" for a, b in LEGAL])
def test_every_legal_pair_is_accepted(current: JobStatus, target: JobStatus) -> None:
    assert can_transition(current, target)
    check_transition(current, target)
    rec = walk(*PATHS[current])
    moved = rec.transition(target, T0 + timedelta(hours=1))
    assert moved.status is target
    assert rec.status is current  # the original is untouched
    assert moved.updated_at == T0 + timedelta(hours=1)


def test_retry_increments_attempt_and_resets_progress() -> None:
    rec = walk(S.QUEUED, S.DISPATCHED, S.RUNNING).with_progress(1, 0.8)
    rec = rec.transition(S.RETRYING, T0, error=JobError(code="worker_lost", retryable=True))
    assert rec.attempt == 1
    assert rec.error is not None
    rec = rec.transition(S.DISPATCHED, T0)
    assert rec.attempt == 2
    assert rec.progress.fraction == 0.0
    assert rec.error is None
    assert rec.with_progress(1, 0.9) is rec  # the old attempt is ignored
    assert rec.with_progress(2, 0.1).progress.fraction == 0.1


def test_no_dispatch_past_max_attempts() -> None:
    rec = record(max_attempts=2)
    rec = rec.transition(S.QUEUED, T0).transition(S.DISPATCHED, T0).transition(S.RETRYING, T0)
    rec = rec.transition(S.DISPATCHED, T0).transition(S.RETRYING, T0)
    assert rec.attempt == 2
    with pytest.raises(IllegalTransitionError, match="no attempts left"):
        rec.transition(S.DISPATCHED, T0)
    assert rec.transition(S.FAILED, T0).status is S.FAILED


def test_terminal_records_are_immutable() -> None:
    done = walk(S.QUEUED, S.DISPATCHED, S.RUNNING).transition(S.SUCCEEDED, T0, result={"ok": True})
    assert done.terminal
    assert done.progress.fraction == 1.0
    assert done.timings.finished_at == T0
    for target in JobStatus:
        with pytest.raises(IllegalTransitionError, match="terminal"):
            done.transition(target, T0)
    assert done.with_progress(1, 0.5) is done
    assert done.with_artifact(1, ARTIFACT) is done
    assert done.with_cancel_requested(T0) is done
    assert done.with_heartbeat(1, T0) is done
    with pytest.raises(ValidationError):
        done.status = S.RUNNING


def test_progress_rules() -> None:
    rec = walk(S.QUEUED)
    assert rec.with_progress(1, 0.5) is rec  # not dispatched yet
    rec = walk(S.QUEUED, S.DISPATCHED, S.RUNNING)
    rec = rec.with_progress(1, 0.5, stage="inference", message="half")
    assert (rec.progress.fraction, rec.stage) == (0.5, "inference")
    assert rec.with_progress(1, 0.4) is rec  # lower: ignored, not an error
    assert rec.with_progress(3, 0.9) is rec  # unknown attempt
    assert rec.with_progress(1, 0.5, message="still half").progress.message == "still half"
    with pytest.raises(ValidationError):
        rec.with_progress(1, 1.5)


def test_side_records() -> None:
    rec = walk(S.QUEUED, S.DISPATCHED).with_dispatch("modal", "fc-1", T0)
    assert (rec.backend, rec.call_id) == ("modal", "fc-1")
    rec = rec.with_cancel_requested(T0)
    assert rec.cancel_requested
    assert rec.status is S.DISPATCHED
    rec = rec.with_artifact(1, ARTIFACT).with_artifact(1, ARTIFACT.model_copy(update={"size": 99}))
    assert [a.size for a in rec.artifacts] == [99]
    rec = rec.with_stage(1, StageState(name="train", index=1, count=3, status=StageStatus.RUNNING))
    rec = rec.with_stage(1, StageState(name="colmap", index=0, count=3, status=StageStatus.SUCCEEDED))
    assert [s.name for s in rec.stages] == ["colmap", "train"]
    rec = rec.with_heartbeat(1, T0 + timedelta(seconds=5))
    assert rec.heartbeat_at == T0 + timedelta(seconds=5)
    done = rec.transition(S.CANCELED, T0, cost=JobCost(gpu_seconds=12.5, gpu="T4", estimated_usd=0.002))
    assert done.cost.gpu_seconds == 12.5
    expired = done.with_artifacts_expired()
    assert all(a.expired for a in expired.artifacts)
    assert expired.status is S.CANCELED
    closed = done.with_stage(1, StageState(name="train", index=1, count=3, status=StageStatus.FAILED))
    assert [s.status for s in closed.stages] == [StageStatus.SUCCEEDED, StageStatus.FAILED]  # the worker failed first
    assert closed.with_stage(1, StageState(name="colmap", index=0, count=3, status=StageStatus.FAILED)) is closed
    assert closed.with_stage(1, StageState(name="render", index=2, count=3, status=StageStatus.RUNNING)) is closed
    failed_at_once = walk(S.QUEUED, S.DISPATCHED).transition(S.FAILED, T0)  # the worker's job.failed came first
    check = StageState(name="check", index=0, count=3, status=StageStatus.FAILED)
    assert failed_at_once.with_stage(1, check).stages == (check,)


def test_record_validation() -> None:
    with pytest.raises(ValidationError, match="does not match spec kind"):
        JobRecord(id="job_1", tenant="acme", kind="nerf", spec=spec("pose"), created_at=T0, updated_at=T0)
    with pytest.raises(ValidationError):
        JobRecord.new("job.1", "acme", spec("pose"), T0)
    with pytest.raises(ValidationError):
        Artifact(name="../secret", key="k", size=1)
    with pytest.raises(ValidationError):
        StageState(name="x", index=3, count=3)
    rec = walk(S.QUEUED, S.DISPATCHED, S.RUNNING).with_artifact(1, ARTIFACT)
    assert JobRecord.model_validate_json(rec.model_dump_json()) == rec


# -- property test ---------------------------------------------------------------------------------
Step = tuple[str, JobStatus, int, float]
steps = st.lists(
    st.tuples(
        st.sampled_from(["transition", "progress", "cancel"]),
        st.sampled_from(list(JobStatus)),
        st.integers(min_value=-1, max_value=1),
        st.floats(min_value=0.0, max_value=1.0),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps, max_attempts=st.integers(min_value=1, max_value=4))
def test_random_sequences_follow_allowed(steps: list[Step], max_attempts: int) -> None:
    rec = record(max_attempts)
    for i, (action, target, attempt_offset, fraction) in enumerate(steps):
        at = T0 + timedelta(seconds=i)
        before = rec
        if action == "transition":
            try:
                rec = rec.transition(target, at)
            except IllegalTransitionError:
                assert not can_transition(before.status, target) or (
                    before.status is S.RETRYING and before.attempts_left == 0
                )
                rec = before
            else:
                assert target in ALLOWED[before.status]
                assert rec.status is target
                if before.status is S.RETRYING and target is S.DISPATCHED:
                    assert rec.attempt == before.attempt + 1
                    assert rec.progress.fraction == 0.0
                else:
                    assert rec.attempt == before.attempt
        elif action == "progress":
            rec = rec.with_progress(max(1, before.attempt + attempt_offset), fraction, at=at)
            assert rec.attempt == before.attempt
            assert rec.status is before.status
            assert rec.progress.fraction >= before.progress.fraction
        else:
            rec = rec.with_cancel_requested(at)
            assert rec.status is before.status
        if before.terminal:
            assert rec == before  # terminal never changes
        if rec.attempt == before.attempt:  # progress is monotonic within an attempt
            assert rec.progress.fraction >= before.progress.fraction
        assert 1 <= rec.attempt <= max_attempts
