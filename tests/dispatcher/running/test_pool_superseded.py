"""A pool process whose attempt was dispatched again elsewhere, running a workload that never checks for a
cancel, ends itself (its whole process group) once ``local_worker_superseded_grace_s`` has passed.

Its events are refused from the new dispatch on (:mod:`modal_workers.runtime.sinks.attempt_fence`), but
the workload would run on to its end, a pool slot and its hardware held for nothing, with no dispatcher
left to end it (the one that launched it may be gone: the other replica retried the attempt). Here the
pool runs without a dispatcher, as such a process does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.js import JetStreamContext

from contracts.events.registry import EventType
from contracts.subjects import Subjects
from services.dispatcher.running.local_pool import LocalPool
from services.dispatcher.running.pool_process import WorkerLostError
from services.dispatcher.settings import DispatcherSettings
from tests.support.attempts import dispatched
from tests.support.dispatcher import EventLog, W
from tests.support.gateway import stored
from tests.support.lap import TENANT, lap_request

pytestmark = pytest.mark.timeout(120)
GRACE_S = 1.0


async def test_a_superseded_run_that_never_checks_ends_its_pool_process_after_the_grace(
    settings: DispatcherSettings, js: JetStreamContext, subjects: Subjects, event_log: EventLog
) -> None:
    pool = LocalPool(settings.model_copy(update={"local_worker_superseded_grace_s": GRACE_S}), size=1)
    await pool.start()
    try:
        proc = await pool.acquire()
        pid = proc.pid
        request = lap_request({"video": "upl_x"}, function=f"{W}:forever", heartbeat_interval_s=0.2)
        job_id = request.job_id
        request = request.model_copy(update={"dispatched_seq": await dispatched(js, subjects, job_id, 1)})
        running = asyncio.create_task(pool.run(proc, request))
        await event_log.wait(lambda: event_log.first(job_id, "job.started") is not None, 30)  # under way
        await dispatched(js, subjects, job_id, 2)  # another replica retried the attempt
        with pytest.raises(WorkerLostError) as lost:
            await asyncio.wait_for(running, 60)  # `forever` sleeps 600 s
        assert lost.value.pid == pid
        events = await stored(js, subjects.ns, subjects.job_events(TENANT, job_id))
        redispatch = next(i for i, e in enumerate(events) if e.type == EventType.JOB_DISPATCHED and e.attempt == 2)
        assert [e.type for e in events[redispatch:] if e.source.startswith("worker")] == []
        replaced: Any = await asyncio.wait_for(pool.acquire(), 90)  # the pool started another in its place
        assert replaced.pid != pid
        pool.release(replaced)
    finally:
        await pool.stop()
