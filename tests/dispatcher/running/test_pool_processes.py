"""The local pool's processes outlive what happens to them between runs: one killed while idle is
replaced before a run is handed to it, and a run's call id kills its process only while that process
still runs that attempt (CI: a re-adopted ticket killed two idle pool processes by their old call ids;
the next jobs met closed pipes, were retried, and waited for ever on a pool left with none)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import cast

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.job_parts import JobStatus
from contracts.subjects import Subjects
from services.common.processes import is_running
from services.dispatcher.running.backends import LocalBackend
from services.dispatcher.running.local_pool import EXIT_GRACE_S
from services.dispatcher.running.supervision import Held, Verdict
from services.dispatcher.running.tickets import Ticket
from tests.dispatcher.conftest import StartDispatcher
from tests.dispatcher.running.test_attempts import worker_pid
from tests.support.dispatcher import POSE, EventLog, local_route, read_record, submit, wait_record
from tests.support.scheduling import InstantBackend

pytestmark = pytest.mark.timeout(240)

RESPAWN_S = 90.0
"""Long enough for a new pool process (a fresh interpreter's imports) on a loaded machine."""


async def until(condition: Callable[[], bool], within_s: float = 10.0) -> bool:
    """Whether ``condition()`` holds within ``within_s`` (another process's exit, the pool's pipe)."""
    for _ in range(int(within_s / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return False


async def gone(pid: int, within_s: float = 10.0) -> bool:
    return await until(lambda: not is_running(pid), within_s)


async def test_a_pool_process_killed_while_idle_is_replaced_and_the_next_job_succeeds(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, event_log: EventLog
) -> None:
    await start_dispatcher({"pose": local_route("quick")}, local_pool_size=1)
    first = await submit(js, jobs_kv, subjects, POSE)
    assert (await wait_record(jobs_kv, first, lambda r: r.terminal)).status is JobStatus.SUCCEEDED
    idle = worker_pid(event_log, first)
    os.kill(idle, signal.SIGKILL)
    assert await gone(idle)
    second = await submit(js, jobs_kv, subjects, POSE)
    record = await wait_record(jobs_kv, second, lambda r: r.terminal, RESPAWN_S)
    assert record.status is JobStatus.SUCCEEDED
    # A reservation taken before the kill may still meet the closed pipe: that attempt is retried on
    # the process that replaced it (on the old code nothing replaced it and the job waited for ever).
    assert worker_pid(event_log, second, record.attempt) != idle


async def test_a_call_id_kills_its_pool_process_only_while_it_runs_that_attempt(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, event_log: EventLog
) -> None:
    dispatcher = await start_dispatcher({"pose": local_route("slow_first", timeout_s=120)}, local_pool_size=1)
    assert dispatcher.pool is not None
    backend = LocalBackend(dispatcher.pool)
    job = await submit(js, jobs_kv, subjects, POSE)
    await event_log.wait(lambda: event_log.first(job, "job.progress") is not None)
    pid = worker_pid(event_log, job)
    call_id = f"local:{socket.gethostname()}:{pid}"
    await backend.cancel_call(call_id, "job_someone_else", 1)
    await backend.cancel_call(call_id, job, 2)
    assert is_running(pid)  # on attempt 1 of this job: neither call is its
    await backend.cancel_call(call_id, job, 1)
    assert await gone(pid)
    record = await wait_record(jobs_kv, job, lambda r: r.terminal, RESPAWN_S)
    assert (record.status, record.attempt) == (JobStatus.SUCCEEDED, 2)
    idle = worker_pid(event_log, job, 2)
    pool = dispatcher.pool
    assert await until(lambda: pool.runs(idle) is None)  # its outcome came back (the record can be first)
    await backend.cancel_call(f"local:{socket.gethostname()}:{idle}", job, 2)  # ended: the process is idle
    await asyncio.sleep(0.2)
    assert is_running(idle)


async def test_an_adopted_attempt_whose_worker_already_ended_it_is_neither_retried_nor_killed(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, event_log: EventLog
) -> None:
    backend = InstantBackend(js, subjects, call_id=f"local:{socket.gethostname()}:4242")
    backend.gate.set()
    route = local_route("noop")
    dispatcher = await start_dispatcher({"pose": route}, backends={"local": backend})
    job = await submit(js, jobs_kv, subjects, POSE)
    await event_log.wait_ended([job])
    assert dispatcher.attempts is not None
    # The record as a replica re-adopting the ticket read it while the fold was away: still running.
    lagging = (await read_record(jobs_kv, job)).model_copy(
        update={"status": JobStatus.RUNNING, "attempt": 1, "call_id": backend.call_id}
    )
    ticket = Ticket(tenant="acme", job_id=job, kind="pose", attempt=1)
    held = Held(ticket=ticket, msg=cast(Msg, None), record=lagging, route=route)
    await dispatcher.attempts.runner.conclude(held, Verdict("silent", message="no heartbeat for 1.8 s"), None, backend)
    assert held.outcome == "succeeded"
    assert backend.canceled_calls == []  # its pool process has other work by now
    await asyncio.sleep(0.5)  # a retrying event, had one been published, is back by then
    assert "job.retrying" not in event_log.types(job)


async def test_a_pool_with_busy_processes_stops_within_one_grace_not_one_each(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, event_log: EventLog
) -> None:
    """Each busy process is given EXIT_GRACE_S to exit, then killed: together, not one after the other
    (three busy processes took 3 x 3 s; a fault test's dispatcher then stopped past its 10 s grace)."""
    dispatcher = await start_dispatcher({"pose": local_route("forever", concurrency=3)}, local_pool_size=3)
    jobs = [await submit(js, jobs_kv, subjects, POSE) for _ in range(3)]
    await event_log.wait(lambda: all(event_log.first(job, "job.started") is not None for job in jobs), 60)
    pool = dispatcher.pool
    assert pool is not None
    assert pool.occupancy()["busy"] == 3
    pids = pool.pids
    began = time.monotonic()
    await pool.stop()
    took = time.monotonic() - began
    assert not [pid for pid in pids if is_running(pid)]  # each killed and reaped
    assert took < 2 * EXIT_GRACE_S, took  # one grace and the kills (one after the other: 3 graces, 9 s)
