"""How a held attempt's wait ends when its record and its worker's outcome race, and across a step of
the wall clock (no server needed: the record arrives as the replica's KV watch would hand it over)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from nats.aio.msg import Msg

from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.runs import Outcome
from services.dispatcher.running import supervision
from services.dispatcher.running.backends import Launch
from services.dispatcher.running.supervision import Held, ended_as, wait_for_verdict
from services.dispatcher.running.tickets import Ticket
from tests.contracts.examples import T0, spec
from tests.support.dispatcher import SteppedClock, local_route

pytestmark = pytest.mark.timeout(20)


def held(attempt: int = 1) -> Held:
    """An attempt of ``job_1`` this replica holds, its record still queued."""
    record = JobRecord.new("job_1", "acme", spec("pose"), T0)
    ticket = Ticket(tenant="acme", job_id="job_1", kind="pose", attempt=attempt)
    return Held(ticket=ticket, msg=cast(Msg, None), record=record, route=local_route("quick"))


def ended(record: JobRecord, status: JobStatus, attempt: int) -> JobRecord:
    """``record`` as the fold leaves it once attempt ``attempt`` ended in ``status``."""
    return record.model_copy(update={"status": status, "attempt": attempt})


async def launched(outcome: asyncio.Future[Outcome]) -> Launch:
    """A run whose outcome is ``outcome`` (a pool process's answer over its pipe)."""

    async def answer() -> Outcome:
        return await outcome

    async def cancel() -> None:
        return None

    return Launch(call_id="call-1", outcome=asyncio.ensure_future(answer()), cancel=cancel)


@pytest.mark.parametrize(("status", "counted"), [(JobStatus.SUCCEEDED, "succeeded"), (JobStatus.FAILED, "failed")])
async def test_a_record_ended_by_the_workers_own_event_before_its_outcome_counts_as_that_end(
    status: JobStatus, counted: str
) -> None:
    attempt = held()
    answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    launch = await launched(answer)
    waiting = asyncio.create_task(wait_for_verdict(attempt, launch, time.monotonic() + 30, silence=10))
    attempt.record = ended(attempt.record, status, attempt=1)  # the KV watch first
    attempt.changed.set()
    await asyncio.sleep(0)
    assert not waiting.done(), "the wait must let the worker hand back its outcome"
    answer.set_result(Outcome(status="succeeded", result={"ok": True}))
    verdict = await asyncio.wait_for(waiting, 5)

    assert verdict.reason == "ended"
    assert launch.outcome.done()
    assert ended_as(attempt) == counted


@pytest.mark.parametrize(
    ("status", "attempt_no"), [(JobStatus.CANCELED, 1), (JobStatus.SUCCEEDED, 2), (JobStatus.QUEUED, 2)]
)
async def test_a_record_ended_elsewhere_counts_as_ended(status: JobStatus, attempt_no: int) -> None:
    attempt = held()
    launch: Any = None
    attempt.record = ended(attempt.record, status, attempt=attempt_no)
    verdict = await asyncio.wait_for(wait_for_verdict(attempt, launch, time.monotonic() + 30, silence=10), 5)

    assert verdict.reason == "ended"
    assert ended_as(attempt) == "ended"


BEAT_S = 0.1


def beating(record: JobRecord) -> JobRecord:
    """``record`` as the fold leaves it after a heartbeat stamped now (by the worker's own clock)."""
    return record.model_copy(update={"status": JobStatus.RUNNING, "heartbeat_at": datetime.now(UTC)})


async def test_a_wall_clock_step_does_not_make_a_heartbeating_attempt_silent_and_its_silence_is_still_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The supervisor's host steps its wall clock 90 s ahead while the worker (elsewhere) heartbeats: for
    three silences the attempt lives (before, every sign looked 90 s old at the step and it was called
    silent at once); once the heartbeats stop, the silence is called after one silence, not before."""
    attempt, silence = held(), 2.0  # a loaded machine may stall the loop for a second
    revision = 1
    attempt.offer(beating(attempt.record), revision)
    waiting = asyncio.create_task(wait_for_verdict(attempt, None, time.monotonic() + 30, silence))
    stepped_at = time.monotonic() + 0.5
    beats_until = time.monotonic() + 3 * silence
    while time.monotonic() < beats_until:
        if time.monotonic() >= stepped_at:
            monkeypatch.setattr(supervision, "time", SteppedClock(90.0))
        revision += 1
        attempt.offer(beating(attempt.record), revision)
        last_beat = time.monotonic()
        await asyncio.sleep(BEAT_S)
        assert not waiting.done(), f"called {waiting.result()} while its heartbeats came"

    verdict = await asyncio.wait_for(waiting, 5 * silence)
    assert verdict.reason == "silent"
    assert time.monotonic() - last_beat >= silence


async def test_a_wall_clock_step_neither_brings_a_timeout_forward_nor_stops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timeout is on the monotonic clock: a step of 90 s ahead right after the start does not end a
    1.5 s timeout at once, and it still ends when due."""
    attempt = held()
    attempt.offer(beating(attempt.record), 1)
    began = time.monotonic()
    monkeypatch.setattr(supervision, "time", SteppedClock(90.0))
    waiting = asyncio.create_task(wait_for_verdict(attempt, None, began + 1.5, silence=10))
    revision = 1
    while not waiting.done():
        revision += 1
        attempt.offer(beating(attempt.record), revision)
        await asyncio.sleep(BEAT_S)
        assert time.monotonic() - began < 5, "the timeout never came"

    assert waiting.result().reason == "timeout"
    assert time.monotonic() - began >= 1.5
