"""An attempt runs once even when its ticket is redelivered while its first holder stalls between the
claim and the launch (a full pool, a stalled loop): the second launch finds the first's
``job.dispatched`` stored under the attempt's id and supervises instead of running it again."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.subjects import Subjects
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, submit
from tests.support.scheduling import InstantBackend


async def test_a_ticket_redelivered_during_a_stall_does_not_run_the_attempt_twice(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, event_log: EventLog
) -> None:
    stalled, prompt = InstantBackend(js, subjects, tag="a"), InstantBackend(js, subjects, tag="b")
    prompt.gate.set()
    route = {"pose": local_route("noop", concurrency=1)}
    try:
        await start_dispatcher(route, backends={"local": stalled})
        job_id = await submit(js, jobs_kv, subjects, POSE)
        await wait_for(lambda: stalled.reserving == 1, 30, "the first holder waiting for capacity")
        await start_dispatcher(route, backends={"local": prompt})  # gets the ticket once its ack wait is over
        await wait_for(lambda: prompt.runs, 30, "the redelivered ticket launched by the second replica")
        stalled.gate.set()  # the first holder goes on with its claim
        await event_log.wait_ended([job_id])
        await wait_for(lambda: stalled.announced == 1, 30, "the first holder's launch announced or refused")
        assert event_log.ended(job_id) == "job.succeeded"
        assert stalled.runs + prompt.runs == [(job_id, 1)], "the attempt ran twice"
    finally:
        for backend in (stalled, prompt):
            await backend.close()
