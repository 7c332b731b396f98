"""A redelivery never moves a record: in any history the platform writes, folding a run of its events
again after later ones (a batch given back, a holder that died) gives the record folding it once did.

Histories are as the platform writes them: ``job.created``, ``job.queued`` and positions, then per
attempt ``job.dispatched``, ``job.started``, the attempt's events (progress that never goes back,
heartbeats, artifacts, each stage running then ended, a session's snapshots, results and alerts, stop
and cancel requests) and its end; a retry starts the next attempt. Every event type the fold knows is
drawn.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from contracts.envelope import EventEnvelope
from contracts.events import jobs as je
from contracts.events import sessions as se
from contracts.events.registry import EventType, make_event
from contracts.job_parts import Artifact, JobError, StageStatus
from contracts.specs.jobs import parse_job_spec
from services.dispatcher.fold.records import fold, route_pricing
from tests.dispatcher.fold.test_fold import SPEC, T0

E = EventType
SPLAT = parse_job_spec({"kind": "splat", "params": {"camera_mount": {"xyz": [0, 0, 1]}}})
PRICING = route_pricing({"pose": 3.6, "splat": 3.6})
ENDS = (E.JOB_RETRYING, E.JOB_SUCCEEDED, E.JOB_FAILED, E.JOB_CANCELED)
DURING = (E.JOB_PROGRESS, E.JOB_HEARTBEAT, E.JOB_ARTIFACT, E.JOB_STAGE, E.JOB_LOG, E.JOB_CANCEL_REQUESTED,
          E.SESSION_SNAPSHOT, E.SESSION_RESULT, E.SESSION_ALERT, E.SESSION_STOP_REQUESTED)  # fmt: skip


def _artifact(n: int) -> Artifact:
    return Artifact(name=f"f{n % 3}.txt", key=f"results/acme/job_1/f{n}", size=n + 1)


class _Attempt:
    """One attempt's events as a worker and the dispatcher write them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.fraction, self.seq, self.stages = rng, 0.0, 0, {0: 0, 1: 0}

    def payload(self, type_: EventType, n: int) -> BaseModel | None:
        rng = self.rng
        match type_:
            case E.JOB_PROGRESS:
                self.fraction = min(1.0, self.fraction + rng.choice([0.0, 0.25]))
                return je.JobProgressPayload(fraction=self.fraction, stage=f"s{n % 2}", message=f"m{n}")
            case E.JOB_HEARTBEAT:
                return je.JobHeartbeatPayload(worker="w")
            case E.JOB_ARTIFACT:
                return je.JobArtifactPayload.model_validate(_artifact(n).model_dump())
            case E.JOB_STAGE:
                index = rng.choice([i for i, step in self.stages.items() if step < 2] or [0])
                status = StageStatus.RUNNING if self.stages[index] == 0 else rng.choice(list(StageStatus)[2:])
                self.stages[index] += 1
                return je.JobStagePayload(name=f"stage{index}", index=index, count=2, status=status)
            case E.JOB_LOG:
                return je.JobLogPayload(message=f"line {n}")
            case E.SESSION_SNAPSHOT:
                self.seq += rng.choice([0, 1])
                return se.SessionSnapshotPayload(artifact=_artifact(n), seq=self.seq)
            case E.SESSION_RESULT | E.SESSION_ALERT:
                self.seq += 1
                if type_ is E.SESSION_RESULT:
                    return se.SessionResultPayload(chunk=self.seq, first_seq=1, last_seq=self.seq)
                return se.SessionAlertPayload(chunk=self.seq, first_seq=1, last_seq=1, pattern="p", message="m")
            case E.SESSION_STOP_REQUESTED:
                return se.SessionStopRequestedPayload()
            case E.JOB_CANCEL_REQUESTED:
                return je.JobCancelRequestedPayload()
        return None


def _end(type_: EventType, attempt: int) -> BaseModel:
    match type_:
        case E.JOB_RETRYING:
            return je.JobRetryingPayload(reason="worker_lost", next_attempt=attempt + 1, delay_s=0)
        case E.JOB_SUCCEEDED:
            return je.JobSucceededPayload(result={"a": attempt}, artifacts=(_artifact(attempt + 5),))
        case E.JOB_FAILED:
            return je.JobFailedPayload(error=JobError(code="boom"))
    return je.JobCanceledPayload()


def history(rng: random.Random) -> list[EventEnvelope]:
    """A job's events as the platform writes them (times mostly rising, now and then a little back)."""
    steps: list[tuple[EventType, Any, int | None]] = [
        (E.JOB_CREATED, je.JobCreatedPayload(spec=rng.choice([SPEC, SPLAT]), max_attempts=3), None),
        (E.JOB_QUEUED, je.JobQueuedPayload(), 1),
        *((E.JOB_POSITION, je.JobPositionPayload(position=3 - p, eta_s=float(p)), 1) for p in range(rng.randint(0, 3))),
    ]  # fmt: skip
    for attempt in (1, 2, 3):
        gpu = rng.choice(["T4", None])
        dispatched = je.JobDispatchedPayload(backend="local", function="f", call_id=f"c{attempt}", gpu=gpu)
        steps += [(E.JOB_DISPATCHED, dispatched, attempt), (E.JOB_STARTED, je.JobStartedPayload(worker="w"), attempt)]
        run = _Attempt(rng)
        for n in range(rng.randint(0, 10)):
            type_ = rng.choice(DURING)
            steps.append((type_, run.payload(type_, n), attempt))
        end = rng.choice(ENDS if attempt < 3 else ENDS[1:])
        steps.append((end, _end(end, attempt), attempt))
        if end is not E.JOB_RETRYING:
            break
    return [
        make_event(type_, payload, tenant="acme", source="t", job_id="job_1", kind="pose", attempt=attempt,
                   time=T0 + timedelta(seconds=k - rng.choice([0, 0, 0, 0.5])))
        for k, (type_, payload, attempt) in enumerate(steps)
    ]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.randoms(use_true_random=False), st.data())
def test_a_run_of_events_folded_again_after_later_ones_changes_nothing(rng: random.Random, data: st.DataObject) -> None:
    events = history(rng)
    last = data.draw(st.integers(1, len(events) - 1), label="the run ends at")
    first = data.draw(st.integers(1, last), label="the run starts at")
    once = fold(events, PRICING)
    again = fold([*events[: last + 1], *events[first : last + 1], *events[last + 1 :]], PRICING)
    assert once is not None
    assert again is not None
    ours, theirs = once.model_dump(mode="json"), again.model_dump(mode="json")
    assert again == once, {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}


def test_a_stage_of_an_attempt_that_retried_does_not_come_back_on_a_redelivery() -> None:
    """The attempt's stage, then its progress naming another stage, then ``job.retrying``: folded again
    after the retry, the stage event must not move the record (the progress, ignored now, cannot undo it)."""

    def event(type_: EventType, payload: BaseModel, second: int, attempt: int | None = 1) -> EventEnvelope:
        return make_event(type_, payload, tenant="acme", source="t", job_id="job_1", kind="pose", attempt=attempt,
                          time=T0 + timedelta(seconds=second))  # fmt: skip

    stage = je.JobStagePayload(name="train", index=1, count=2, status=StageStatus.SUCCEEDED)
    retrying = je.JobRetryingPayload(reason="worker_lost", next_attempt=2, delay_s=0)
    events = [
        event(E.JOB_CREATED, je.JobCreatedPayload(spec=SPEC, max_attempts=3), 0, None),
        event(E.JOB_QUEUED, je.JobQueuedPayload(), 1),
        event(E.JOB_DISPATCHED, je.JobDispatchedPayload(backend="local", function="f"), 2),
        event(E.JOB_STARTED, je.JobStartedPayload(worker="w"), 3),
        event(E.JOB_STAGE, stage, 4),
        event(E.JOB_PROGRESS, je.JobProgressPayload(fraction=0.5, stage="export"), 5),
        event(E.JOB_RETRYING, retrying, 6),
        event(E.JOB_DISPATCHED, je.JobDispatchedPayload(backend="local", function="f"), 7, attempt=2),
    ]
    once = fold(events)
    assert once is not None
    assert once.stage == "export"
    assert fold([*events[:7], *events[4:7], events[7]]) == once
