"""Delayed jobs: ``delay_s`` / ``run_at`` keep a job queued until it is due; others pass it meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.subjects import Subjects
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, submit
from tests.support.scheduling import InstantBackend

DELAY_S = 8.0
"""The two jobs submitted after the delayed ones must be dispatched within it: 3 s was too short on a
loaded machine (a run with three test workers on two cores took 3.1 s for both)."""


async def test_a_delayed_job_waits_until_due_and_lets_later_jobs_pass(
    start_dispatcher: StartDispatcher,
    instant: InstantBackend,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    instant.run_s = 0.05
    instant.gate.set()
    await start_dispatcher({"pose": local_route("noop", concurrency=1)}, backends={"local": instant})
    run_at = (datetime.now(UTC) + timedelta(seconds=DELAY_S)).isoformat()
    delayed = await submit(js, jobs_kv, subjects, POSE | {"delay_s": DELAY_S})
    scheduled = await submit(js, jobs_kv, subjects, POSE | {"run_at": run_at})
    now = [await submit(js, jobs_kv, subjects, POSE) for _ in range(2)]
    await event_log.wait_ended([delayed, scheduled, *now], DELAY_S + 20)
    dispatched = {j: event_log.first(j, "job.dispatched") for j in (delayed, scheduled, *now)}
    created = event_log.first(delayed, "job.created")
    assert created is not None
    times = {j: e.time for j, e in dispatched.items() if e is not None}
    assert (times[delayed] - created.time).total_seconds() >= DELAY_S
    assert times[scheduled] >= datetime.fromisoformat(run_at)
    assert max(times[j] for j in now) < min(times[delayed], times[scheduled])  # they passed the delayed ones
