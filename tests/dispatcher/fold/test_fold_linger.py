"""A fold batch of only progress-like events waits for more (services/dispatcher/fold/linger.py): a burst
costs one record write (issue 34), so does a queueing and launch (job.queued, job.dispatched,
job.started) and a job's artifacts with its end, and any other event ends the wait at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.events import jobs as je
from contracts.events.registry import EventType
from contracts.ids import tenant_key
from contracts.job_parts import StageStatus
from contracts.job_record import JobRecord
from contracts.subjects import Subjects
from services.dispatcher.fold.linger import linger, lingers
from services.dispatcher.fold.partition_pulls import FETCH_WAIT_S
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import EventLog, local_route, record_writes
from tests.support.events import create_job, job_event, publish

LINGER_S = 5.0
"""The settings' most: far longer than a burst takes to publish, even on a loaded machine."""
ACK_WAIT_S = 30.0
"""The production ack wait: a linger may take at most a fifth of it (the tests' 2 s had the server
redeliver what lingered: a redelivered job.queued ended a launch's wait, in CI)."""
BURST, SPACING_S = 5, 0.05
ROUNDS = 3


def _msg(event: str) -> Msg:
    return Msg(_client=None, subject=f"t.fold.0.acme.job_1.{event}")  # type: ignore[arg-type]


def test_only_progress_like_events_a_launch_and_artifacts_linger() -> None:
    assert lingers([_msg("progress"), _msg("log"), _msg("heartbeat"), _msg("position")])
    assert lingers([_msg("queued"), _msg("dispatched"), _msg("started"), _msg("progress")])
    assert lingers([_msg("artifact"), _msg("result"), _msg("alert"), _msg("progress")])
    for other in ("created", "stage", "succeeded", "failed", "canceled", "retrying", "cancel_requested",
                  "snapshot", "ready", "resumed", "stop_requested"):  # fmt: skip
        assert not lingers([_msg("progress"), _msg(other)]), other


async def test_linger_stops_at_an_event_that_does_not_linger_at_a_full_batch_and_at_nothing() -> None:
    pulls: list[int] = []

    def puller(*batches: list[Msg]):  # type: ignore[no-untyped-def]
        left = list(batches)

        async def pull(n: int, wait_s: float) -> list[Msg]:
            assert 0 < wait_s <= LINGER_S
            pulls.append(n)
            return left.pop(0)[:n] if left else []

        return pull

    progress, stage = _msg("progress"), _msg("stage")
    more = await linger(puller([progress], [progress, stage], [progress]), 10, LINGER_S)
    assert (more, pulls) == ([progress, progress, stage], [10, 9])
    pulls.clear()
    assert await linger(puller([progress] * 3, [progress] * 3), 4, LINGER_S) == [progress] * 4
    assert pulls == [4, 1]
    assert await linger(puller(), 4, LINGER_S) == []
    assert await linger(puller([progress]), 4, 0.0) == []  # no wait at all: nothing pulled


async def test_a_renewed_linger_pulls_once_more_after_an_empty_pull() -> None:
    """With ``renew``, an empty pull before the deadline (the open request ran out) is followed by one
    more, a request lasting the rest of the wait; an empty pull after that ends the wait."""
    progress, pulls = _msg("progress"), 0

    async def pull(n: int, wait_s: float) -> list[Msg]:
        nonlocal pulls
        pulls += 1
        return [progress] if pulls == 2 else []

    assert await linger(pull, 10, LINGER_S) == []
    assert pulls == 1
    pulls = 0
    assert await linger(pull, 10, LINGER_S, renew=True) == [progress]
    assert pulls == 3  # empty, the renewed request brings one, then nothing: done (no second renewal)


async def test_linger_returns_what_came_when_cancelled() -> None:
    came, waiting = asyncio.Event(), asyncio.Event()
    progress = _msg("progress")

    async def pull(n: int, wait_s: float) -> list[Msg]:
        if not came.is_set():
            came.set()
            return [progress]
        waiting.set()  # the second pull: nothing more comes
        await asyncio.sleep(wait_s)
        return []

    task = asyncio.ensure_future(linger(pull, 10, LINGER_S))
    await waiting.wait()
    task.cancel()
    assert await task == [progress]  # to be folded and acked; the partition's loop raises the cancel


async def _record(jobs_kv: KeyValue, job: str) -> JobRecord:
    entry = await jobs_kv.get(tenant_key("acme", job))
    assert entry.value is not None
    return JobRecord.model_validate_json(entry.value)


async def _running_job(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects
) -> str:
    """A dispatcher lingering :data:`LINGER_S` and a job it folded to running.

    The pin is held a minute: a partition due to hand its pin over lingers on its open request alone."""
    await start_dispatcher(
        {"pose": local_route("noop")},
        fold_partitions=1,
        fold_linger_s=LINGER_S,
        fold_pin_hold_s=60.0,
        event_ack_wait_s=ACK_WAIT_S,
    )
    return await _job_running(js, jobs_kv, subjects)


async def _job_running(js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects) -> str:
    """A new job, folded to running by the dispatcher started."""
    job = await create_job(jobs_kv, "acme")
    await publish(js, subjects, job_event("acme", job, EventType.JOB_QUEUED, je.JobQueuedPayload()))
    dispatched = je.JobDispatchedPayload(backend="local", function="pose")
    await publish(js, subjects, job_event("acme", job, EventType.JOB_DISPATCHED, dispatched))
    await publish(js, subjects, job_event("acme", job, EventType.JOB_STARTED, je.JobStartedPayload(worker="w")))
    await wait_for(
        lambda: _record_is(jobs_kv, job, lambda r: r.status == "running"), timeout_s=30, what="the job running"
    )
    return job


async def _record_is(jobs_kv: KeyValue, job: str, check: Callable[[JobRecord], bool]) -> bool:
    return check(await _record(jobs_kv, job))


async def _progress(js: JetStreamContext, subjects: Subjects, job: str, fraction: float) -> None:
    await publish(
        js, subjects, job_event("acme", job, EventType.JOB_PROGRESS, je.JobProgressPayload(fraction=fraction))
    )


async def test_a_queueing_a_launch_and_a_quick_end_are_one_record_write_and_the_end_goes_at_once(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects
) -> None:
    """job.queued, job.dispatched, job.started and job.succeeded half a second apart: one write, the
    terminal one (the fold before wrote queued, then dispatched, then running, then succeeded; then
    queued and succeeded, while job.queued ended the wait), made as soon as job.succeeded came, not
    when the linger would have ended."""
    await start_dispatcher(
        {"pose": local_route("noop")},
        fold_partitions=1,
        fold_linger_s=LINGER_S,
        fold_pin_hold_s=60.0,
        event_ack_wait_s=ACK_WAIT_S,
    )
    job = await create_job(jobs_kv, "acme")
    dispatched = je.JobDispatchedPayload(backend="local", function="pose")
    async with record_writes(jobs_kv, job) as written:
        await publish(js, subjects, job_event("acme", job, EventType.JOB_QUEUED, je.JobQueuedPayload()))
        await asyncio.sleep(0.5)  # a batch of its own, had it not waited
        await publish(js, subjects, job_event("acme", job, EventType.JOB_DISPATCHED, dispatched))
        await asyncio.sleep(0.5)
        await publish(js, subjects, job_event("acme", job, EventType.JOB_STARTED, je.JobStartedPayload(worker="w")))
        await asyncio.sleep(0.5)
        ended = time.monotonic()
        await publish(js, subjects, job_event("acme", job, EventType.JOB_SUCCEEDED, je.JobSucceededPayload()))
        await wait_for(lambda: written[-1].terminal, timeout_s=30, what="the job folded to succeeded")
        took = time.monotonic() - ended
    assert [r.status for r in written] == ["created", "succeeded"], "a queueing and launch written in parts"
    timings = written[-1].timings
    assert None not in (timings.queued_at, timings.dispatched_at, timings.started_at)
    assert took < LINGER_S - 1.0, f"the end waited {took:.1f} s: held back by the linger"


async def test_a_jobs_artifacts_and_its_end_are_one_record_write(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects
) -> None:
    """Four artifacts 50 ms apart, then job.succeeded: one write, the terminal one with all four (an
    artifact ended the wait before: a write for nearly each file, as a lap_compare's four had)."""
    job = await _running_job(start_dispatcher, js, jobs_kv, subjects)
    names = [f"out/{n}.json" for n in range(4)]
    async with record_writes(jobs_kv, job) as written:
        for name in names:
            artifact = je.JobArtifactPayload(name=name, key=f"results/acme/{job}/{name}", size=1)
            await publish(js, subjects, job_event("acme", job, EventType.JOB_ARTIFACT, artifact))
            await asyncio.sleep(SPACING_S)
        ended = time.monotonic()
        await publish(js, subjects, job_event("acme", job, EventType.JOB_SUCCEEDED, je.JobSucceededPayload()))
        await wait_for(lambda: written[-1].terminal, timeout_s=30, what="the job folded to succeeded")
        took = time.monotonic() - ended
    writes = [(r.status, len(r.artifacts)) for r in written]  # the record as it stood, then each write
    assert writes == [("running", 0), ("succeeded", 4)], "the artifacts written apart"
    assert sorted(a.name for a in written[-1].artifacts) == names
    assert took < LINGER_S - 1.0, f"the end waited {took:.1f} s: held back by the linger"


async def test_a_burst_of_progress_is_one_record_write_and_a_stage_goes_at_once(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects
) -> None:
    """Five progress events 50 ms apart: written once, with the last fraction (the old fold wrote each).
    Then a progress and a stage: the stage ends the wait, folded long before it would end, with the
    progress in the same write."""
    job = await _running_job(start_dispatcher, js, jobs_kv, subjects)
    async with record_writes(jobs_kv, job) as written:
        for n in range(1, BURST + 1):
            await _progress(js, subjects, job, n / 10)
            await asyncio.sleep(SPACING_S)
        burst = BURST / 10
        await wait_for(lambda: written[-1].progress.fraction == burst, 30, what="the burst written")
        fractions = [r.progress.fraction for r in written]
        assert not {n / 10 for n in range(1, BURST)} & set(fractions), f"a burst written in parts: {fractions}"

        stage = je.JobStagePayload(name="train", index=0, count=2, status=StageStatus.RUNNING)
        await _progress(js, subjects, job, 0.9)
        sent = time.monotonic()
        await publish(js, subjects, job_event("acme", job, EventType.JOB_STAGE, stage))
        await wait_for(
            lambda: written[-1].stages, timeout_s=LINGER_S - 1.0, what="the stage folded before the linger ran out"
        )
        assert time.monotonic() - sent < LINGER_S - 1.0
    assert written[-1].progress.fraction == 0.9
    assert not [r for r in written if r.progress.fraction == 0.9 and not r.stages], "the progress written alone"


async def test_a_burst_longer_than_a_pull_request_is_one_record_write(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, event_log: EventLog
) -> None:
    """Two progress events further apart than a pull request lasts (``FETCH_WAIT_S``), within the
    linger: the request that ran out is followed by another, and both are one write (the first was
    written alone when the linger waited on the open request only).

    The dispatcher runs on this test's loop. A round whose second event was published only late in
    the linger (the sleep between them outran its 1.5 s by seconds) says nothing: the loop stalled,
    on a loaded machine, and the dispatcher with it. Such a round is done again with a new job, up to
    :data:`ROUNDS` in all; a round without a stall decides, and rounds that all stalled fail. This test
    was marked a known defect (the first written alone in a third of the fresh-clone runs): it lingered
    5 s on the tests' 2 s ack wait, so the server redelivered what lingered (each event came two or
    three times in one batch); a linger is now at most a fifth of the ack wait."""
    job = await _running_job(start_dispatcher, js, jobs_kv, subjects)
    for _ in range(ROUNDS):
        async with record_writes(jobs_kv, job) as written:
            await _progress(js, subjects, job, 0.1)
            first = time.monotonic()
            await asyncio.sleep(FETCH_WAIT_S + 0.5)  # the request open when the first came has run out
            await _progress(js, subjects, job, 0.2)
            apart = time.monotonic() - first
            await wait_for(lambda: written[-1].progress.fraction == 0.2, 30, what="the burst written")
        if apart < LINGER_S - 2.0:  # no stall: the second came well within the linger
            fractions = [r.progress.fraction for r in written]
            stored = [(e.type, e.source, e.time.isoformat()) for e in event_log.events[job]]  # what ended the wait?
            assert 0.1 not in fractions, f"the first written alone; published {apart:.2f} s apart; stored: {stored}"
            return
        job = await _job_running(js, jobs_kv, subjects)
    pytest.fail(f"in each of {ROUNDS} rounds the loop stalled for most of the {LINGER_S} s linger")
