"""How a held attempt's wait ends when its record and its worker's outcome race (no server needed:
the record arrives as the replica's KV watch would hand it over)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest
from nats.aio.msg import Msg

from contracts.job_record import JobRecord, JobStatus
from contracts.runs import Outcome
from services.dispatcher.running.backends import Launch
from services.dispatcher.running.supervision import Held, ended_as, wait_for_verdict
from services.dispatcher.store import Ticket
from tests.contracts.examples import T0, spec
from tests.support.dispatcher import local_route

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
    waiting = asyncio.create_task(wait_for_verdict(attempt, launch, time.time() + 30, silence=10))
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
    verdict = await asyncio.wait_for(wait_for_verdict(attempt, launch, time.time() + 30, silence=10), 5)

    assert verdict.reason == "ended"
    assert ended_as(attempt) == "ended"
