"""An event redelivered after later events of its job were folded: the job is folded again from JOBS.

A netfaults run (n2's slow link) left a job's KV record ``succeeded`` without ``started_at`` while JOBS
held its ``job.started``: the event came to the fold again only after ``job.succeeded`` had been folded
(a batch given back whose nak was slow, while the open pull delivered what came next), and folded
then it changed nothing. Here a real consumer delivers one job's events as a fold partition reads them:
``job.started`` is delivered and never folded (lost with a connection), ``job.succeeded`` is folded, and
``job.started`` comes again after the ack wait: the fold hands the job to :class:`Refolds`, which
marks it in KV ``fold_refolds`` before the batch is acked and writes the record back as the fold of the
job's history; a replica that stops first leaves the mark to the next one that starts, and to the
replicas still running, which read the marks again every ``fold_refold_marks_every_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from nats.js.errors import APIError
from nats.js.kv import KV_DEL, KV_OP, KeyValue

from bench.harness.waiting import wait_for
from contracts.events import jobs as je
from contracts.events.registry import EventType, make_event
from contracts.ids import tenant_key
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.streams import JOBS, KV_FOLD_REFOLDS
from contracts.subjects import Namespace, Subjects, event_token
from services.common.nats.connection import cancel_and_wait
from services.common.nats.kv import kv_scan
from services.common.nats.publish import WRONG_LAST_SEQUENCE, publish_event
from services.dispatcher.consumers import ConsumerGuard, Redelivery
from services.dispatcher.fold import refold
from services.dispatcher.fold.batch import BatchFold
from services.dispatcher.fold.history import job_history
from services.dispatcher.fold.reactions import Reactions
from services.dispatcher.fold.records import fold
from services.dispatcher.fold.refold import Refolds
from services.dispatcher.job_events import JobEvents
from services.dispatcher.store import JobStore
from tests.support.dispatcher import POSE, read_record, submit

E = EventType
POLICY = Redelivery(max_deliver=3, retry_delay_s=0.05, retry_delay_max_s=0.2)
ACK_WAIT_S = 1.0


async def _job(js: JetStreamContext, kv: KeyValue, subjects: Subjects) -> str:
    """A pose job created as the gateway does, and its attempt's events as the dispatcher and a worker
    publish them: queued, dispatched, started, succeeded."""
    job_id = await submit(js, kv, subjects, POSE)
    steps = [
        (E.JOB_QUEUED, je.JobQueuedPayload()),
        (E.JOB_DISPATCHED, je.JobDispatchedPayload(backend="local", function="f", call_id="c1")),
        (E.JOB_STARTED, je.JobStartedPayload(worker="w")),
        (E.JOB_SUCCEEDED, je.JobSucceededPayload(result={"ok": True})),
    ]
    for type_, payload in steps:
        event = make_event(type_, payload, tenant="acme", source="test", job_id=job_id, kind="pose", attempt=1)
        await publish_event(js, subjects.job_event("acme", job_id, type_.removeprefix("job.")), event)
    return job_id


@dataclass
class Delivered:
    """One job's events delivered by a consumer on JOBS as a fold partition reads them, its ``job.created``
    taken; the partition's batch fold, and the refolds it hands jobs to, running."""

    job_id: str
    sub: JetStreamContext.PullSubscription
    folder: BatchFold
    refolds: Refolds
    running: asyncio.Task[None]
    marks: KeyValue
    """KV ``fold_refolds``."""


@pytest.fixture
async def delivered(
    js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, subjects: Subjects
) -> AsyncIterator[Delivered]:
    """Over a bare set of reactions (no routes, no queue: none of these events but ``job.created`` has a
    reaction, and this fold is not given that one); the deliveries due again after :data:`ACK_WAIT_S`."""
    reactions = Reactions(JobStore(jobs_kv), JobEvents(js, namespace), jobs_kv, jobs_kv, {}, None, None)  # type: ignore[arg-type]
    marks = await js.key_value(namespace.bucket(KV_FOLD_REFOLDS))
    refolds = Refolds(reactions, max_events=100, most_waiting=100, marks=marks)
    folder = BatchFold(reactions, ConsumerGuard(js, subjects), POLICY, "refold-test", "test", refold_later=refolds.add)
    job_id = await _job(js, jobs_kv, subjects)
    config = ConsumerConfig(ack_wait=ACK_WAIT_S, max_deliver=5)
    sub = await js.pull_subscribe(
        subjects.job_events("acme", job_id), durable="refold-test", stream=namespace.stream(JOBS), config=config
    )
    (created,) = await sub.fetch(1)  # the record is the one the gateway made
    await created.ack_sync()
    running = asyncio.create_task(refolds.run())
    try:
        yield Delivered(job_id, sub, folder, refolds, running, marks)
    finally:
        await cancel_and_wait([running])


async def _folded(js: JetStreamContext, namespace: Namespace, job_id: str) -> JobRecord | None:
    history = await job_history(js, namespace, "acme", job_id, most_events=100)
    assert history is not None
    return fold(history)


async def _fold(folder: BatchFold, msgs: list[Msg]) -> None:
    await folder.fold(msgs, time.monotonic() + 30.0)
    for msg in msgs:
        await msg.ack_sync()


async def test_an_event_redelivered_after_later_ones_of_its_job_is_folded_in_stream_order(
    js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, delivered: Delivered
) -> None:
    job_id, sub, folder, refolds = delivered.job_id, delivered.sub, delivered.folder, delivered.refolds
    await _fold(folder, await sub.fetch(2))  # queued, dispatched
    (lost,) = await sub.fetch(1)
    assert event_token(lost.subject) == "started"  # delivered, never folded: lost with its connection
    await _fold(folder, await sub.fetch(1))  # job.succeeded, delivered for the first time
    gap = await read_record(jobs_kv, job_id)
    assert (gap.status, gap.timings.started_at) == (JobStatus.SUCCEEDED, None)  # it went past job.started
    assert refolds.refolded == 0

    (again,) = await sub.fetch(1, timeout=10 * ACK_WAIT_S)  # due again after the ack wait
    assert event_token(again.subject) == "started"
    assert again.metadata.num_delivered == 2
    await _fold(folder, [again])  # folded on its own, it changes nothing: the job is folded again

    folded = await _folded(js, namespace, job_id)
    assert folded is not None
    assert folded.timings.started_at is not None

    await wait_for(lambda: refolds.refolded, timeout_s=20, what="the record written back as the fold of its events")
    assert refolds.refolded == 1
    assert await read_record(jobs_kv, job_id) == folded
    await wait_for(lambda: refolds.waiting == 0, timeout_s=20, what="the refold done")
    assert await kv_scan(delivered.marks, ">") == []  # its mark deleted


async def test_a_job_a_stopped_replica_left_waiting_is_folded_again_by_the_next_to_start(
    js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, delivered: Delivered
) -> None:
    """The mark is written before the batch is acked: the redelivery is gone from the consumer, and the
    replica that had it stops before its refold; the next one to start reads the mark."""
    job_id, sub, folder, marks = delivered.job_id, delivered.sub, delivered.folder, delivered.marks
    await cancel_and_wait([delivered.running])  # this replica's refolds stop
    await _fold(folder, await sub.fetch(2))
    await sub.fetch(1)  # job.started, lost
    await _fold(folder, await sub.fetch(1))
    (again,) = await sub.fetch(1, timeout=10 * ACK_WAIT_S)
    await _fold(folder, [again])  # acked: the consumer has nothing more of the job
    assert [item.key for item in await kv_scan(marks, ">")] == [tenant_key("acme", job_id)]
    assert (await read_record(jobs_kv, job_id)).timings.started_at is None

    reactions = delivered.refolds.reactions
    next_one = Refolds(reactions, max_events=100, most_waiting=100, marks=marks)
    running = asyncio.create_task(next_one.run())
    try:
        await wait_for(lambda: next_one.refolded, timeout_s=20, what="the marked job folded again")
        await wait_for(lambda: next_one.waiting == 0, timeout_s=20, what="its mark deleted")
    finally:
        await cancel_and_wait([running])
    assert await read_record(jobs_kv, job_id) == await _folded(js, namespace, job_id)
    assert await kv_scan(marks, ">") == []


async def test_a_job_a_dead_replica_left_marked_is_folded_again_by_one_still_running(
    js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, delivered: Delivered
) -> None:
    """The replica that marked the job dies before its refold and never starts again; another, running
    since before the mark, finds it at its next read of the marks (not a day later, when the bucket forgets it)."""
    job_id, sub, folder, marks = delivered.job_id, delivered.sub, delivered.folder, delivered.marks
    await cancel_and_wait([delivered.running])  # the replica that will mark the job: its refolds never run
    survivor = Refolds(delivered.refolds.reactions, max_events=100, most_waiting=100, marks=marks, marks_every_s=0.2)
    running = asyncio.create_task(survivor.run())
    try:
        await wait_for(lambda: survivor.reads, timeout_s=20, what="the running replica's first read of the marks")
        await _fold(folder, await sub.fetch(2))
        await sub.fetch(1)  # job.started, lost
        await _fold(folder, await sub.fetch(1))
        (again,) = await sub.fetch(1, timeout=10 * ACK_WAIT_S)
        await _fold(folder, [again])  # marked by the dead replica, and acked
        await wait_for(lambda: survivor.refolded, timeout_s=20, what="the marked job folded again")
        await wait_for(lambda: survivor.waiting == 0, timeout_s=20, what="its mark deleted")
    finally:
        await cancel_and_wait([running])
    assert survivor.reads >= 2
    assert await read_record(jobs_kv, job_id) == await _folded(js, namespace, job_id)
    assert await kv_scan(marks, ">") == []


async def test_a_mark_written_again_meanwhile_is_left_to_whoever_wrote_it(
    jobs_kv: KeyValue, delivered: Delivered
) -> None:
    """Another replica had the job redelivered and marked it again while this one folded it: this one's
    delete (on its own mark's revision) is refused, and the other's mark stays."""
    job_id, marks, refolds = delivered.job_id, delivered.marks, delivered.refolds
    await cancel_and_wait([delivered.running])
    await refolds.add("acme", job_id)
    again = await marks.put(tenant_key("acme", job_id), b"")
    running = asyncio.create_task(refolds.run())
    try:
        await wait_for(lambda: refolds.waiting == 0, timeout_s=20, what="the job folded again")
    finally:
        await cancel_and_wait([running])
    assert [(item.key, item.revision) for item in await kv_scan(marks, ">")] == [(tenant_key("acme", job_id), again)]


async def test_a_redelivered_batch_its_record_already_agrees_with_is_not_written_again(
    js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, delivered: Delivered
) -> None:
    job_id, sub, folder, refolds = delivered.job_id, delivered.sub, delivered.folder, delivered.refolds
    batch = await sub.fetch(4)
    await folder.fold(batch, time.monotonic() + 30.0)  # folded, its acks lost: the whole batch comes again
    writes = len(await jobs_kv.history(tenant_key("acme", job_id)))
    again = await sub.fetch(4, timeout=10 * ACK_WAIT_S)
    assert [msg.metadata.num_delivered for msg in again] == [2, 2, 2, 2]
    await _fold(folder, again)
    await wait_for(lambda: refolds.waiting == 0, timeout_s=20, what="the job folded again")
    assert len(await jobs_kv.history(tenant_key("acme", job_id))) == writes  # it agreed: not written
    assert refolds.refolded == 0
    assert await read_record(jobs_kv, job_id) == await _folded(js, namespace, job_id)


async def test_a_refold_that_fails_is_tried_again_until_it_is_done_or_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """NATS away: tried again after the others; one that keeps failing is given up on; the waiting jobs are
    bounded (one more is dropped, and counted)."""
    monkeypatch.setattr(refold, "RETRY_S", 0.01)
    monkeypatch.setattr(refold, "GIVE_UP_S", 2.0)
    tries: Counter[str] = Counter()

    async def flaky(self: Refolds, tenant: str, job_id: str) -> bool:
        tries[job_id] += 1
        if job_id == "job_never" or tries[job_id] < 3:
            raise TimeoutError
        return True

    monkeypatch.setattr(Refolds, "refold", flaky)
    failures: list[int] = []
    refolds = Refolds(None, max_events=1, most_waiting=2, failed=lambda: failures.append(1))  # type: ignore[arg-type]
    running = asyncio.create_task(refolds.run())
    try:
        for job_id in ("job_flaky", "job_never", "job_flaky", "job_over"):
            await refolds.add("acme", job_id)
        assert (refolds.waiting, refolds.left) == (2, 1)  # job_flaky once; job_over past the bound
        await wait_for(lambda: refolds.waiting == 0, timeout_s=20, what="every refold done or given up")
    finally:
        await cancel_and_wait([running])
    assert tries["job_flaky"] == 3
    assert tries["job_never"] >= 2
    assert "job_over" not in tries
    assert len(failures) == tries["job_flaky"] - 1 + tries["job_never"]


async def test_marks_past_the_bound_stay_marked_for_the_next_start(delivered: Delivered) -> None:
    """A replica takes in as many marked jobs as may wait; the rest stay marked (jobs without a record
    here: each refold finds nothing to write, and its mark is deleted)."""
    marks = delivered.marks
    await cancel_and_wait([delivered.running])
    for job_id in ("job_a", "job_b", "job_c"):
        await marks.put(tenant_key("acme", job_id), b"")
    bounded = Refolds(delivered.refolds.reactions, max_events=100, most_waiting=2, marks=marks)
    running = asyncio.create_task(bounded.run())

    async def one_left() -> bool:
        return len(await kv_scan(marks, ">")) == 1

    try:
        await wait_for(one_left, timeout_s=20, what="two of the three marks deleted")
        await wait_for(lambda: bounded.waiting == 0, timeout_s=20, what="the two refolds done")
    finally:
        await cancel_and_wait([running])
    assert await one_left()


async def test_a_marks_write_that_reaches_the_bucket_after_its_refold_ended_is_refused(
    js: JetStreamContext, delivered: Delivered
) -> None:
    """A mark's write that timed out may reach the bucket later (its server paused, then back), after the
    refold it asked for deleted the mark: every write of the mark, sent again then, is refused, and no mark
    is left for a job folded already (a netfaults run's plain put was stored so, and the job stayed marked)."""
    job_id, marks, refolds = delivered.job_id, delivered.marks, delivered.refolds
    await cancel_and_wait([delivered.running])
    sent: list[Msg] = []

    async def saw(msg: Msg) -> None:
        sent.append(msg)

    sub = await js._nc.subscribe(f"{marks._pre}>", cb=saw)  # each write of the bucket as it is sent
    for _ in range(2):  # a mark made, then made again over its delete
        await refolds.add("acme", job_id)
        running = asyncio.create_task(refolds.run())
        try:
            await wait_for(lambda: refolds.waiting == 0, timeout_s=20, what="the job folded again")
        finally:
            await cancel_and_wait([running])
    await sub.unsubscribe()
    writes = [msg for msg in sent if (msg.headers or {}).get(KV_OP) != KV_DEL]
    assert len(writes) >= 2, sent
    for late in writes:
        with pytest.raises(APIError) as refused:
            await js.publish(late.subject, late.data, headers=late.headers)
        assert refused.value.err_code == WRONG_LAST_SEQUENCE, late.headers
    assert await kv_scan(marks, ">") == []
