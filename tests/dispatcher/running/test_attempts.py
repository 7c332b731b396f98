"""Acceptance on a real nats-server with the local pool: retries, errors, timeouts, heartbeats, cancel."""

from __future__ import annotations

import os
import signal

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.envelope import EventEnvelope
from contracts.event_ids import worker_event_id
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.route_table import RetryPolicy
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.common.nats.publish import EXPECTED_LAST, EXPECTED_LAST_SUBJECT
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, request_cancel, submit, tickets_done, wait_record

S = JobStatus


def worker_pid(log: EventLog, job_id: str, attempt: int = 1) -> int:
    started = next(e for e in log.events[job_id] if e.type == "job.started" and e.attempt == attempt)
    return int(started.data["worker"].removeprefix("local-"))


async def fence_of_ending(
    js: JetStreamContext, namespace: Namespace, subjects: Subjects, record: JobRecord
) -> tuple[int, int]:
    """The JOBS sequence the stored job.succeeded was fenced by (its expected last job.dispatched), and
    the sequence of the job's last job.dispatched."""
    stream = namespace.stream(JOBS)
    ending = await js.get_last_msg(stream, subjects.stored_job_event(record.tenant, record.id, "succeeded"))
    dispatched = await js.get_last_msg(stream, subjects.stored_job_event(record.tenant, record.id, "dispatched"))
    assert ending.headers is not None
    assert ending.headers[EXPECTED_LAST_SUBJECT] == subjects.stored_job_event(record.tenant, record.id, "dispatched")
    return int(ending.headers[EXPECTED_LAST]), dispatched.seq


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_job_runs_and_its_record_is_complete(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
) -> None:
    await start_dispatcher({"pose": local_route("quick")})
    job = await submit(js, jobs_kv, subjects, POSE)
    record = await wait_record(jobs_kv, job, lambda r: r.terminal)
    assert record.status is S.SUCCEEDED
    assert record.result == {"ok": True, "attempt": 1}
    assert [a.name for a in record.artifacts] == ["out.txt"]
    assert record.progress.fraction == 1.0
    assert record.backend == "local"
    assert record.cost.gpu_seconds > 0
    assert record.cost.estimated_usd == pytest.approx(record.cost.gpu_seconds / 1000)
    types = event_log.types(job)
    assert types[:4] == ["job.created", "job.queued", "job.dispatched", "job.started"]  # its place in job.queued
    assert record.queue is None  # its queue position went with its dispatch
    assert types[-1] == "job.succeeded"
    fence, dispatched = await fence_of_ending(js, namespace, subjects, record)
    assert fence == dispatched  # the worker's ending was stored only while its dispatch was the latest


async def test_a_worker_killed_mid_job_is_retried_and_succeeds_on_attempt_2(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
) -> None:
    await start_dispatcher({"pose": local_route("slow_first")})
    job = await submit(js, jobs_kv, subjects, POSE)
    await event_log.wait(lambda: event_log.first(job, "job.progress") is not None)
    os.kill(worker_pid(event_log, job), signal.SIGKILL)
    record = await wait_record(jobs_kv, job, lambda r: r.terminal)
    assert record.status is S.SUCCEEDED
    assert record.attempt == 2
    assert record.result == {"attempt": 2}
    retrying = event_log.first(job, "job.retrying")
    assert retrying is not None
    assert retrying.data["reason"] == "worker_lost"
    assert retrying.data["next_attempt"] == 2
    fence, dispatched = await fence_of_ending(js, namespace, subjects, record)
    assert fence == dispatched
    fenced_by = EventEnvelope.from_json_bytes((await js.get_msg(namespace.stream(JOBS), fence)).data or b"")
    assert (fenced_by.type, fenced_by.attempt) == ("job.dispatched", 2)  # not attempt 1's


async def test_a_permanent_error_fails_at_once_with_the_workers_code(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    dispatcher = await start_dispatcher({"pose": local_route("bad_input")})
    job = await submit(js, jobs_kv, subjects, POSE)
    record = await wait_record(jobs_kv, job, lambda r: r.terminal)
    assert record.status is S.FAILED
    assert record.attempt == 1
    assert record.error is not None
    assert (record.error.code, record.error.message) == (
        "bad_video",
        "the file is not a video",
    )
    assert "job.retrying" not in event_log.types(job)
    await tickets_done(js, dispatcher.dispatch_stream)  # the dispatcher concluded the attempt
    failed = [e.id for e in event_log.events[job] if e.type == "job.failed"]
    assert failed == [worker_event_id(job, 1, "failed")]  # the worker's, not a second one


async def test_timeout_fails_with_code_timeout_or_retries_as_configured(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    fail = local_route("slow_first", timeout_s=1.0)
    retry = local_route(
        "slow_first",
        timeout_s=1.0,
        retries=RetryPolicy(max_attempts=2, backoff_initial_s=0.05, retry_on_timeout=True),
    )
    await start_dispatcher({"pose": fail, "lap_compare": retry})
    failing = await submit(js, jobs_kv, subjects, POSE)
    retried = await submit(js, jobs_kv, subjects, {"kind": "lap_compare", "inputs": POSE["inputs"]})
    failed = await wait_record(jobs_kv, failing, lambda r: r.terminal)
    assert failed.status is S.FAILED
    assert failed.error is not None
    assert failed.error.code == "timeout"
    assert gone(worker_pid(event_log, failing))
    ok = await wait_record(jobs_kv, retried, lambda r: r.terminal)
    assert ok.status is S.SUCCEEDED
    assert ok.attempt == 2
    assert ok.cost.gpu_seconds >= 1.0  # attempt 1's second is paid for too


async def test_missed_heartbeats_are_a_lost_worker_retried_or_failed(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    no_retry = RetryPolicy(max_attempts=3, retry_on_worker_lost=False)
    await start_dispatcher(
        {"pose": local_route("freeze_first"), "lap_compare": local_route("freeze_first", retries=no_retry)}
    )
    retried = await submit(js, jobs_kv, subjects, POSE)
    failing = await submit(js, jobs_kv, subjects, {"kind": "lap_compare", "inputs": POSE["inputs"]})
    ok = await wait_record(jobs_kv, retried, lambda r: r.terminal)
    assert ok.status is S.SUCCEEDED
    assert ok.attempt == 2
    lost = await wait_record(jobs_kv, failing, lambda r: r.terminal)
    assert lost.status is S.FAILED
    assert lost.error is not None
    assert lost.error.code == "worker_lost"
    assert gone(worker_pid(event_log, failing))


async def test_cancel_while_queued_and_while_running(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    await start_dispatcher({"pose": local_route("forever", concurrency=1)})
    running = await submit(js, jobs_kv, subjects, POSE)
    await event_log.wait(lambda: event_log.first(running, "job.started") is not None)
    queued = await submit(js, jobs_kv, subjects, POSE)
    await wait_record(jobs_kv, queued, lambda r: r.status is S.QUEUED)
    await request_cancel(js, subjects, queued)
    record = await wait_record(jobs_kv, queued, lambda r: r.terminal)
    assert record.status is S.CANCELED
    assert "job.dispatched" not in event_log.types(queued)
    pid = worker_pid(event_log, running)
    await request_cancel(js, subjects, running)
    record = await wait_record(jobs_kv, running, lambda r: r.terminal)
    assert record.status is S.CANCELED
    await event_log.wait(lambda: event_log.ended(running) == "job.canceled")
    assert gone(pid)
