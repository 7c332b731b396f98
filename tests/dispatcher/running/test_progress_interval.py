"""The dispatcher's ``progress_min_interval_s`` reaches its workers (``RunRequest``): how many of a
workload's progress reports are stored as ``job.progress`` (issue 34: each one is about 6 messages)."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.job_parts import JobStatus
from contracts.subjects import Subjects
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, submit, wait_record

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(("interval_s", "stored"), [(0.0, 9), (30.0, 2)])
async def test_the_dispatchers_progress_interval_throttles_its_workers_reports(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
    interval_s: float,
    stored: int,
) -> None:
    """Nine reports at once: every one with 0, the first and the last with a 30 s interval."""
    await start_dispatcher({"pose": local_route("reports_nine")}, progress_min_interval_s=interval_s)
    job_id = await submit(js, jobs_kv, subjects, POSE)
    assert (await wait_record(jobs_kv, job_id, lambda r: r.terminal)).status is JobStatus.SUCCEEDED
    await event_log.wait_ended([job_id])
    fractions = [e.data["fraction"] for e in event_log.events[job_id] if e.type == "job.progress"]
    assert len(fractions) == stored, fractions
    assert (fractions[0], fractions[-1]) == (0.1, 0.9)
