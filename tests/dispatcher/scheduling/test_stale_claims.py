"""A queue entry claimed by a ticket DISPATCH no longer holds is let go, so its job runs
(:mod:`services.dispatcher.scheduling.stale_claims`); and a holder's own ticket, delivered again while
its attempt runs, is kept rather than acked, which would leave such a claim behind."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts import streams
from contracts.ids import new_id
from contracts.job_parts import JobStatus
from contracts.streams import Declarations
from contracts.subjects import Namespace, Subjects
from services.dispatcher.scheduling.queue import QueueIndex
from services.dispatcher.scheduling.queue_entries import QueueEntry
from services.dispatcher.scheduling.stale_claims import StaleClaims
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, local_route, submit, wait_record
from tests.support.scheduling import InstantBackend

S = JobStatus
GONE = 10**9
"""A ticket sequence DISPATCH does not hold."""


class CountingGets:
    """A JetStream context that counts its message gets."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js, self.gets = js, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.js, name)

    async def get_msg(self, stream: str, seq: int) -> Any:
        self.gets += 1
        return await self.js.get_msg(stream, seq)


def _entry(job_id: str, claimed_by: int | None) -> QueueEntry:
    return QueueEntry(
        tenant="acme", job_id=job_id, kind="pose", attempt=1, enqueued_at=time.time(), claimed_by=claimed_by
    )


async def test_a_job_whose_entry_a_gone_ticket_claimed_runs(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects,
    namespace: Namespace,
) -> None:  # fmt: skip
    queue_kv = await js.key_value(namespace.bucket(streams.KV_DISPATCH_QUEUE))
    job_id = new_id("job")
    # Its attempt's entry, claimed by a ticket that then left DISPATCH with the entry still there: the
    # fold's enqueue finds it made and publishes a ticket, which finds nothing unclaimed to take.
    await queue_kv.create(_entry(job_id, GONE).key, _entry(job_id, GONE).model_dump_json().encode())
    dispatcher = await start_dispatcher(
        {"pose": local_route("noop")}, claim_check_after_s=0.3, claim_check_interval_s=0.1
    )
    await submit(js, jobs_kv, subjects, POSE, job_id=job_id)
    assert (await wait_record(jobs_kv, job_id, lambda r: r.terminal)).status is S.SUCCEEDED
    assert dispatcher.metrics()["claims_released"] == 1


async def test_only_due_claims_whose_ticket_is_gone_and_not_held_here_are_let_go(
    js: JetStreamContext, declared: Declarations, namespace: Namespace
) -> None:
    kv = await js.key_value(namespace.bucket(streams.KV_DISPATCH_QUEUE))
    stream = namespace.stream(streams.DISPATCH)
    queue = QueueIndex(kv)
    ticket = (await js.publish(namespace.subject("dispatch.pose"), b"{}")).seq
    alive, gone, mine = _entry(new_id("job"), ticket), _entry(new_id("job"), GONE), _entry(new_id("job"), GONE)
    for entry in (alive, gone, mine):
        assert await queue.enqueue(entry)
    counting, now = CountingGets(js), [0.0]
    claims = StaleClaims(counting, stream, queue, lambda: [mine.key], after_s=10.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert await claims.sweep() == []
    assert counting.gets == 0  # no claim has been seen for 10 s yet
    now[0] = 10.0
    assert await claims.sweep() == [gone.key]
    assert counting.gets == 2  # the one held here is not asked about
    assert QueueEntry.model_validate_json((await kv.get(gone.key)).value or b"").claimed_by is None
    assert QueueEntry.model_validate_json((await kv.get(alive.key)).value or b"").claimed_by == ticket
    assert QueueEntry.model_validate_json((await kv.get(mine.key)).value or b"").claimed_by == GONE
    now[0] = 29.0  # a claim found held is looked at again after twice as long: 20 s, then 40 s
    assert await claims.sweep() == []
    assert counting.gets == 2
    now[0] = 30.0
    assert await claims.sweep() == []
    assert counting.gets == 3
    await js.delete_msg(stream, ticket)  # its holder acked it without dropping the entry
    now[0] = 69.0
    assert await claims.sweep() == []
    now[0] = 70.0
    assert await claims.sweep() == [alive.key]
    assert counting.gets == 4
    assert claims.released == 2


async def test_a_held_ticket_delivered_again_is_kept_until_its_attempt_ends(
    start_dispatcher: StartDispatcher, instant: InstantBackend, js: JetStreamContext, jobs_kv: KeyValue,
    subjects: Subjects, namespace: Namespace,
) -> None:  # fmt: skip
    instant.gate.set()
    instant.finish.clear()
    dispatcher = await start_dispatcher(  # a run this backend holds sends no heartbeat: never silent here
        {"pose": local_route("noop")}, {"local": instant}, ticket_ack_wait_s=0.5, heartbeat_interval_s=30.0
    )
    next(task for task in dispatcher._tasks if task.get_name() == "keep-tickets").cancel()  # no in_progress
    job_id = await submit(js, jobs_kv, subjects, POSE)
    await wait_record(jobs_kv, job_id, lambda r: r.status in (S.DISPATCHED, S.RUNNING))
    stream = namespace.stream(streams.DISPATCH)
    attempts = dispatcher.attempts
    assert attempts is not None

    def held_delivery() -> int:
        return max((held.msg.metadata.num_delivered or 0 for held in attempts.held.values()), default=0)

    # Delivered twice again, each delivery taken over by its holder, not acked (acked, the slot would be
    # free while the attempt runs, and its entry left claimed by a ticket DISPATCH no longer holds).
    await wait_for(lambda: held_delivery() >= 3, 20.0, "a third delivery of the held ticket")
    assert (await js.stream_info(stream)).state.messages == 1
    assert instant.runs == [(job_id, 1)]
    instant.finish.set()
    assert (await wait_record(jobs_kv, job_id, lambda r: r.terminal)).status is S.SUCCEEDED
    await wait_for(lambda: _messages(js, stream, 0), 10.0, "the held ticket acked")


async def test_a_held_ticket_is_kept_alive_past_its_ack_wait_while_its_attempt_runs(
    start_dispatcher: StartDispatcher, instant: InstantBackend, js: JetStreamContext, jobs_kv: KeyValue,
    subjects: Subjects,
) -> None:  # fmt: skip
    """The replica's keep-tickets sweep tells JetStream every ``ticket_ack_wait_s / 3`` that a held ticket is
    in progress: a run longer than the ack wait is not delivered again (the case above, without the sweep)."""
    instant.gate.set()
    instant.finish.clear()
    ack_wait_s = 2.0  # the sweep every 0.67 s: a redelivery needs the loop stalled for 1.3 s
    dispatcher = await start_dispatcher(
        {"pose": local_route("noop")}, {"local": instant}, ticket_ack_wait_s=ack_wait_s, heartbeat_interval_s=30.0
    )
    job_id = await submit(js, jobs_kv, subjects, POSE)
    await wait_record(jobs_kv, job_id, lambda r: r.status in (S.DISPATCHED, S.RUNNING))
    attempts = dispatcher.attempts
    assert attempts is not None
    await asyncio.sleep(2.5 * ack_wait_s)  # without the sweep: delivered at 0, 2 and 4 s
    assert [held.msg.metadata.num_delivered for held in attempts.held.values()] == [1]
    instant.finish.set()
    assert (await wait_record(jobs_kv, job_id, lambda r: r.terminal)).status is S.SUCCEEDED


async def _messages(js: JetStreamContext, stream: str, count: int) -> bool:
    return (await js.stream_info(stream)).state.messages == count
