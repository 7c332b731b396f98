"""A held attempt's heartbeats heard as the server passes them on (services/dispatcher/running/hearing.py):
a log slow to store them (here: none stores them) does not make a live worker look silent."""

from __future__ import annotations

import asyncio
import json
import time
from typing import cast

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.streams import JOBS
from contracts.subjects import Subjects
from services.dispatcher.running import hearing as hearing_module
from services.dispatcher.running.hearing import INTERVAL_S, Hearing
from services.dispatcher.running.supervision import Held, wait_for_verdict
from services.dispatcher.running.tickets import Ticket
from tests.contracts.examples import T0, spec
from tests.support.dispatcher import SteppedClock, local_route

pytestmark = pytest.mark.timeout(60)
SILENCE_S = 2.0
BEATING_S = 3 * SILENCE_S
EVERY_S = 0.1


def running_attempt() -> Held:
    """Attempt 1 of ``job_1``, running; its record shows no heartbeat (the fold lags)."""
    record = JobRecord.new("job_1", "acme", spec("pose"), T0).model_copy(update={"status": JobStatus.RUNNING})
    ticket = Ticket(tenant="acme", job_id="job_1", kind="pose", attempt=1)
    return Held(ticket=ticket, msg=cast(Msg, None), record=record, route=local_route("quick"))


async def test_heartbeats_that_pass_but_are_not_stored_keep_an_attempt_alive_and_their_end_is_a_silence(
    nc: NatsClient, subjects: Subjects
) -> None:
    """This namespace's JOBS stores no heartbeat, so the log has none to show: for
    :data:`BEATING_S` (three silences) the heartbeats passing keep the attempt alive (before, it was
    called silent after two), and once they stop the silence is called. A heartbeat of another attempt
    is not one of this attempt's."""
    created = subjects.job_event("acme", "job_1", "created")
    await nc.jetstream().add_stream(StreamConfig(name=subjects.ns.stream(JOBS), subjects=[created]))
    hearing = Hearing(nc, subjects)
    link = asyncio.create_task(hearing.link.run())  # as the dispatcher runs it
    held = running_attempt()
    subject = subjects.job_event("acme", "job_1", "heartbeat")
    waiting = asyncio.create_task(wait_for_verdict(held, None, time.monotonic() + 60, SILENCE_S, hearing))
    await asyncio.sleep(0.2)  # subscribed
    beats_until = time.monotonic() + BEATING_S
    while time.monotonic() < beats_until:
        last_beat = time.monotonic()
        await nc.publish(subject, json.dumps({"type": "job.heartbeat", "attempt": 1}).encode())
        await nc.publish(subject, json.dumps({"type": "job.heartbeat", "attempt": 2}).encode())
        await asyncio.sleep(EVERY_S)
        assert not waiting.done(), f"called {waiting.result()} while its heartbeats passed"
    assert hearing.heard("acme", "job_1", 1) > 0
    assert hearing.heard("acme", "job_1", 2) == 0

    stopped = time.monotonic()
    while not waiting.done():  # only attempt 2's now: attempt 1 is silent
        await nc.publish(subject, json.dumps({"type": "job.heartbeat", "attempt": 2}).encode())
        await asyncio.sleep(EVERY_S)
        assert time.monotonic() - stopped < 8 * SILENCE_S, "a silence never called"
    link.cancel()
    assert waiting.result().reason == "silent"
    assert time.monotonic() - last_beat >= SILENCE_S
    assert hearing.heard("acme", "job_1", 1) == 0  # nothing kept once its supervision ended


async def test_the_logs_heartbeats_count_from_when_they_are_found_not_by_a_stepped_wall_clock(
    nc: NatsClient, subjects: Subjects, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log's last heartbeat of an attempt, read with this host's wall clock 90 s ahead: the first
    one found counts by its stamp's age (90 s old here: older than the link's view), and one stored
    after it counts from when it is found (now), not from its stamp, which the step makes look 90 s
    old too (before, the log's sign was its stamp, a wall-clock time)."""
    subject = subjects.job_event("acme", "job_1", "heartbeat")
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=subjects.ns.stream(JOBS), subjects=[subject]))
    beat = json.dumps({"type": "job.heartbeat", "attempt": 1}).encode()
    await js.publish(subject, beat)
    hearing = Hearing(nc, subjects)
    monkeypatch.setattr(hearing_module, "time", SteppedClock(90.0))
    link = asyncio.create_task(hearing.link.run())  # as the dispatcher runs it
    async with hearing.listening("acme", "job_1", 1):
        await asyncio.sleep(2 * INTERVAL_S)
        first = await hearing.last_sign("acme", "job_1", 1)
        # its stamp looks 90 s old: the link's view is the later sign. Not "before the ask": under load the
        # ask's own round trip may find a gap and move the view to then (a fresh clone's run, by 0.2 ms).
        assert first <= hearing.link.regained_at
        await js.publish(subject, beat)
        found = time.monotonic()
        second = await hearing.last_sign("acme", "job_1", 1)
        assert found <= second <= time.monotonic()
        assert await hearing.last_sign("acme", "job_1", 1) == second  # the same one: no newer sign
    link.cancel()
