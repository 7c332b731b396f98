"""The fault checker finds what it is for: a history with one acknowledged job missing, one SSE gap,
one missing webhook, an attempt run twice and a session that ended unclearly fails; the same history
whole passes. No root needed: it is data in, verdicts out.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bench.harness.fault_reads import BRIEF_EVENTS, Stored, events_brief
from contracts.envelope import EventEnvelope
from contracts.events.jobs import (
    JobCreatedPayload,
    JobDispatchedPayload,
    JobQueuedPayload,
    JobStartedPayload,
    JobSucceededPayload,
)
from contracts.events.registry import EventType
from services.dispatcher.fold.records import fold, route_pricing
from tests.support.events import job_event, job_spec
from tests.support.netns.checker import Observed, check, slowest
from tests.support.netns.history import History

pytestmark = pytest.mark.netfaults
PHASE = "planted"
PRICING = route_pricing({"pose": 3.6})


def lifecycle(job_id: str, first_seq: int) -> list[Stored]:
    """A whole job: created, queued, dispatched, started, a log line, succeeded (seqs from ``first_seq``)."""
    payloads = [
        (EventType.JOB_CREATED, JobCreatedPayload(spec=job_spec())),
        (EventType.JOB_QUEUED, JobQueuedPayload()),
        (EventType.JOB_DISPATCHED, JobDispatchedPayload(backend="local", function="pose")),
        (EventType.JOB_STARTED, JobStartedPayload(worker="worker-1")),
        (EventType.JOB_LOG, None),
        (EventType.JOB_SUCCEEDED, JobSucceededPayload()),
    ]
    return [Stored(first_seq + i, job_event("acme", job_id, t, p)) for i, (t, p) in enumerate(payloads)]


def webhook(event: EventEnvelope) -> tuple[str, bytes]:
    """The delivery a receiver gets for ``event``."""
    return event.id, json.dumps({"job_id": event.job_id, "id": event.id}).encode()


def run(jobs: int = 3) -> tuple[History, Observed]:
    """A history of ``jobs`` acknowledged submissions and one session, and everything read back whole."""
    history = History(phase=PHASE)
    stored, kv, hooks, sse = {}, {}, {}, {}
    for n in range(jobs):
        job_id = f"job_{n:032x}"
        history.complete(history.invoke("submitter", "submit", f"key{n}"), "ok", job_id)
        stored[job_id] = events = lifecycle(job_id, 1 + 10 * n)
        kv[job_id] = fold((s.event for s in events), PRICING)
        hooks[job_id] = [webhook(s.event) for s in events] + [webhook(events[2].event)]  # one redelivery
        sse[job_id] = ([s.seq for s in events], True)
    history.complete(history.invoke("submitter", "submit", "lost"), "unknown", "no answer")
    ending = {"status": "succeeded", "error": None, "processed": [1, 2, 3], "dropped": 0, "acked": [1, 2, 3]}
    history.complete(history.invoke("session-1", "session", "ses"), "ok", ending)
    return history, Observed(stored, kv, dict(kv), hooks, sse)


def test_a_whole_history_passes_with_its_figures() -> None:
    history, observed = run()
    report = check(history, PHASE, observed)
    assert report.problems == []
    assert (report.offered, report.acknowledged, report.unknown, report.terminal, report.lost) == (4, 3, 1, 3, 0)
    assert (report.webhooks_expected, report.webhooks_missing, report.webhook_duplicates) == (18, 0, 3)
    assert report.duplicated_types == {"job.dispatched": 3}  # the redelivery of each job's third event
    assert "(duplicates 3: job.dispatched 3)" in report.line()
    assert report.sessions == {"succeeded": 1}


def test_an_event_stored_twice_is_told_apart_from_a_webhook_delivered_twice() -> None:
    history, observed = run(jobs=1)
    ((job_id, events),) = observed.stored.items()
    again = Stored(events[-1].seq + 1, events[1].event)  # job.queued sent again as a new message
    observed.stored[job_id] = [*events, again]
    observed.webhooks[job_id].append(webhook(again.event))
    report = check(history, PHASE, observed)
    assert report.duplicated_types == {"job.dispatched": 1, "job.queued": 1, "stored twice": 1}


def test_a_planted_loss_gap_and_missing_webhook_each_fail_the_check() -> None:
    history, observed = run()
    lost, gapped, unhooked = sorted(observed.stored)
    del observed.stored[lost], observed.kv[lost], observed.folded[lost], observed.sse[lost]  # acknowledged, gone
    seqs, _ = observed.sse[gapped]
    observed.sse[gapped] = (seqs[:2] + seqs[3:], True)  # the reader skipped one event
    observed.webhooks[unhooked] = [
        w for w in observed.webhooks[unhooked] if w[0] != observed.stored[unhooked][4].event.id
    ]
    report = check(history, PHASE, observed)
    assert (report.lost, report.terminal, report.sse_gaps, report.webhooks_missing) == (1, 2, 1, 1)
    assert len(report.problems) == 3, report.problems  # the loss, the gap, the webhook
    assert any(f"{lost}: acknowledged (201) but not in JOBS" in p for p in report.problems)
    assert any(f"{unhooked}: 1 events never reached the webhook receiver" in p for p in report.problems)


def test_an_attempt_run_twice_a_stale_kv_record_and_an_unclear_session_fail_the_check() -> None:
    history, observed = run(jobs=2)
    twice, stale = sorted(observed.stored)
    events = observed.stored[twice]
    again = job_event("acme", twice, EventType.JOB_STARTED, JobStartedPayload(worker="worker-2"))
    events.insert(4, Stored(events[3].seq, again))  # attempt 1 started by a second worker
    record = observed.kv[stale]
    assert record is not None
    observed.kv[stale] = record.model_copy(update={"updated_at": datetime(2020, 1, 1, tzinfo=UTC)})
    history.ops[-1].value = {"status": "failed", "error": "worker_error", "processed": [], "dropped": 0, "acked": [1]}
    report = check(history, PHASE, observed)
    assert any(f"{twice}: attempt 1 started twice" in p for p in report.problems), report.problems
    assert any(f"{stale}: KV record != fold(stream)" in p for p in report.problems)
    assert any("unclear error: worker_error" in p for p in report.problems)
    assert report.lost == 0


def test_two_attempts_alive_at_once_fail_the_check_and_late_stored_writes_only_count() -> None:
    history, observed = run(jobs=2)
    overlapping, stale = sorted(observed.stored)
    for job_id in (overlapping, stale):
        events = observed.stored[job_id]
        started = events[3].event
        second = started.model_copy(
            update={"attempt": 2, "source": "worker/pose", "time": started.time + timedelta(seconds=5)}
        )
        # attempt 1's worker logs after attempt 2 started (overlapping) or before it, stored after it (stale)
        logged_at = second.time + timedelta(seconds=1 if job_id == overlapping else -1)
        late = events[4].event.model_copy(update={"source": "worker/pose", "time": logged_at})
        events[4:5] = [Stored(events[4].seq, second), Stored(events[4].seq + 1, late)]
    report = check(history, PHASE, observed)
    assert [p for p in report.problems if "still ran" in p] == [
        p for p in report.problems if p.startswith(f"{overlapping}: attempt 1 still ran (job.log")
    ]
    assert any(p.startswith(f"{overlapping}: attempt 1 still ran") for p in report.problems)
    assert not any(p.startswith(f"{stale}: attempt 1 still ran") for p in report.problems)
    assert report.stale_events == 2  # one late-stored event of attempt 1 in each job


def test_the_slowest_job_is_named_with_its_events_times_from_the_heal() -> None:
    history, observed = run(jobs=3)
    history.mark("heal")
    late = sorted(observed.stored)[1]
    events = observed.stored[late]
    heal_at = events[0].event.time.timestamp()
    events[-1] = Stored(events[-1].seq, events[-1].event.model_copy(update={"time": events[0].event.time
                                                                              + timedelta(seconds=30)}))  # fmt: skip
    line = slowest(history, PHASE, observed, heal_at)
    assert line.startswith(f"slowest: {late} (created +0.0, ")
    assert line.endswith("succeeded +30.0 s from the heal)")


def test_a_job_that_did_not_end_is_reported_with_its_queue_entries() -> None:
    history, observed = run(jobs=2)
    stuck = sorted(observed.stored)[0]
    del observed.stored[stuck][2:]  # created and queued only
    observed.kv[stuck] = observed.folded[stuck] = fold((s.event for s in observed.stored[stuck]), PRICING)
    observed.queue_entries[stuck] = "[queue entries pose.acme.x.1 r7 claimed_by=113 (gone from DISPATCH)]"
    report = check(history, PHASE, observed)
    assert report.lost == 1
    assert any(
        p.startswith(f"{stuck}: acknowledged (201) but not terminal (KV queued, stream [])")
        and p.endswith("claimed_by=113 (gone from DISPATCH)]")
        for p in report.problems
    ), report.problems


def test_a_record_off_the_fold_is_reported_with_the_jobs_events_and_a_fold_behind_fails_the_check() -> None:
    history, observed = run(jobs=1)
    (job,) = observed.stored
    record = observed.kv[job]
    assert record is not None
    observed.kv[job] = record.model_copy(update={"updated_at": datetime(2020, 1, 1, tzinfo=UTC)})
    report = check(history, PHASE, observed)
    (off,) = [p for p in report.problems if "KV record != fold(stream)" in p]
    assert off.endswith("[JOBS #1:created/a1, #2:queued/a1, #3:dispatched/a1, #4:started/a1, #5:log/a1, "
                        "#6:succeeded/a1]"), off  # fmt: skip
    many = [Stored(n, job_event("acme", job, EventType.JOB_LOG)) for n in range(1, BRIEF_EVENTS + 6)]
    assert events_brief(many).endswith(f"#{BRIEF_EVENTS}:log/a1, 5 more]")  # a long history is cut short
    history, observed = run(jobs=1)
    assert check(history, PHASE, observed).problems == []
    observed.fold_left = "2 events, 1 jobs to fold again ['acme.job_0']"
    report = check(history, PHASE, observed)
    assert report.problems == [f"the fold had not caught up when KV was read: {observed.fold_left}"]
