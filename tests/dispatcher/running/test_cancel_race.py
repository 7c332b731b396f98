"""A run that ends as its cancel comes ends its job once, on a real nats-server with the local pool.

The worker hears ``job.cancel_requested`` at once and ends its run (``job.succeeded``); the holder hears
it through the folded record a moment later and cancels the run (``job.canceled``). Which is stored
first varies from run to run; either way the job must end exactly once, as its record says. Before
the cancel was one of the attempt's endings, a holder that saw the cancel first stored a second
terminal event after the worker's.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.events.registry import TERMINAL_JOB_EVENTS
from contracts.subjects import Namespace, Subjects
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, request_cancel, submit, tickets_done, wait_record
from tests.support.gateway import stored

JOBS = 6


async def test_a_run_ending_as_its_cancel_comes_ends_the_job_once(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    namespace: Namespace,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    dispatcher = await start_dispatcher({"pose": local_route("ends_on_cancel", concurrency=2)})
    endings = []
    for _ in range(JOBS // 2):  # two at a time: the pool has two processes
        jobs = [await submit(js, jobs_kv, subjects, POSE) for _ in range(2)]
        await event_log.wait(lambda: all(event_log.first(job, "job.started") for job in jobs))  # noqa: B023
        for job in jobs:
            await request_cancel(js, subjects, job)
        for job in jobs:
            record = await wait_record(jobs_kv, job, lambda r: r.terminal)
            await tickets_done(js, dispatcher.dispatch_stream)  # every holder concluded its attempt
            events = await stored(js, namespace, subjects.job_events("acme", job))
            terminals = [f"{e.type} by {e.source}" for e in events if e.type in TERMINAL_JOB_EVENTS]
            assert len(terminals) == 1, f"{job}: {terminals}"
            assert terminals[0].startswith(f"job.{record.status.value} ")
            endings.append(terminals[0].split()[0])
    assert len(endings) == JOBS
