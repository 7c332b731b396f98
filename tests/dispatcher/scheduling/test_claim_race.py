"""Races on the queue index (:mod:`services.dispatcher.scheduling.queue`,
:mod:`services.dispatcher.scheduling.scheduler`), on real KV buckets: the ticket that loses a
compare-and-set claims the next entry in line at once, reading nothing from KV (the watch brings the
winner's claim), and each entry is claimed by one ticket; a kind re-read from KV keeps what the
mirror learned meanwhile."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import streams
from contracts.quotas import TenantQuota
from contracts.streams import Declarations
from contracts.subjects import Namespace
from services.common.nats.connection import cancel_and_wait
from services.common.quotas import QuotaBook
from services.dispatcher.scheduling import queue as queue_module
from services.dispatcher.scheduling.fair_clock import FairClocks
from services.dispatcher.scheduling.queue import QueueIndex
from services.dispatcher.scheduling.queue_entries import QueueEntry
from services.dispatcher.scheduling.run_times import RunTimes
from services.dispatcher.scheduling.scheduler import Scheduler
from services.dispatcher.scheduling.tallies import Tallies


class CountingKv:
    """A KV bucket that counts the reads made through it."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv, self.gets = kv, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.kv, name)

    async def get(self, key: str) -> KeyValue.Entry:
        self.gets += 1
        return await self.kv.get(key)


async def _scheduler(js: JetStreamContext, ns: Namespace, queue: QueueIndex) -> tuple[Scheduler, FairClocks]:
    quotas = QuotaBook(
        await js.key_value(ns.bucket(streams.KV_QUOTAS)), await js.key_value(ns.bucket(streams.KV_TENANT_USAGE)),
        TenantQuota(),
    )  # fmt: skip
    tallies = Tallies(quotas, RunTimes(await js.key_value(ns.bucket(streams.KV_DISPATCH_RUNTIMES)), 5))
    clocks = FairClocks(await js.key_value(ns.bucket(streams.KV_DISPATCH_FAIR)))
    return Scheduler(queue, clocks, {}, 1.0, 60.0, quotas, tallies), clocks


def _entry(job_id: str, at: float) -> QueueEntry:
    return QueueEntry(tenant="acme", job_id=job_id, kind="pose", attempt=1, enqueued_at=at)


async def _head_claimed_elsewhere(
    js: JetStreamContext, namespace: Namespace, kv: KeyValue
) -> tuple[QueueEntry, QueueEntry, Scheduler, FairClocks]:
    """Two entries queued through this replica's mirror (on ``kv``); the other replica claims the head
    with ticket 1, a claim this mirror has not seen (its watch is not running). The head, the second
    and this replica's scheduler with its clocks (stop them)."""
    bucket = await js.key_value(namespace.bucket(streams.KV_DISPATCH_QUEUE))
    mine, theirs = QueueIndex(kv), QueueIndex(bucket)
    now = time.time()
    head, second = _entry("job_head", now - 2), _entry("job_second", now - 1)
    for entry in (head, second):
        assert await mine.enqueue(entry)
    await theirs.reload_kind("pose")
    assert await theirs.claim(head, theirs.by_kind["pose"][head.key][1], seq=1) is not None
    assert mine.by_kind["pose"][head.key][0].claimed_by is None, "this replica has not seen that claim"
    scheduler, clocks = await _scheduler(js, namespace, mine)
    return head, second, scheduler, clocks


async def test_the_ticket_that_loses_a_claim_takes_the_next_entry_without_reading_kv(
    js: JetStreamContext, declared: Declarations, namespace: Namespace
) -> None:
    bucket = await js.key_value(namespace.bucket(streams.KV_DISPATCH_QUEUE))
    counting = CountingKv(bucket)
    head, second, scheduler, clocks = await _head_claimed_elsewhere(js, namespace, counting)  # type: ignore[arg-type]
    try:
        decision = await scheduler.take("pose", seq=2)
        assert decision.entry is not None
        assert decision.fresh
        assert decision.entry.key == second.key
        assert counting.gets == 0, "the lost claim read nothing"
        claims = {key: (await bucket.get(key)).value for key in (head.key, second.key)}
        assert QueueEntry.model_validate_json(claims[head.key] or b"").claimed_by == 1
        assert QueueEntry.model_validate_json(claims[second.key] or b"").claimed_by == 2
        await clocks.settled(5.0)
    finally:
        await clocks.stop()


async def test_a_redelivered_ticket_finds_the_entry_it_claimed_before_behind_a_lagging_mirror(
    js: JetStreamContext, declared: Declarations, namespace: Namespace
) -> None:
    """A ticket claimed the head on its first delivery (on the other replica), then failed; redelivered
    here, where the mirror has not seen that claim and another entry waits, it runs the head again, and
    claims nothing more (in a fault run it claimed the next entry, and the head stayed claimed by a
    ticket that never came again: its job queued for ever)."""
    bucket = await js.key_value(namespace.bucket(streams.KV_DISPATCH_QUEUE))
    head, second, scheduler, clocks = await _head_claimed_elsewhere(js, namespace, bucket)
    try:
        decision = await scheduler.take("pose", seq=1, redelivered=True)
        assert decision.entry is not None
        assert (decision.entry.key, decision.entry.claimed_by, decision.fresh) == (head.key, 1, False)
        assert QueueEntry.model_validate_json((await bucket.get(second.key)).value or b"").claimed_by is None
        await clocks.settled(5.0)
    finally:
        await clocks.stop()


async def test_a_redelivered_ticket_whose_reread_lags_too_finds_its_claim_once_it_loses_to_it(
    js: JetStreamContext, declared: Declarations, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, but the kind's re-read lags as well (its listing is an R1 consumer, which the server may
    place on a replica still catching up after a pause; stood in for here by a re-read that changes
    nothing). The ticket picks the head again and loses the compare-and-set to its own claim; it then
    reads the head from the bucket's leader and runs it, claiming nothing more. Before, it claimed the
    second entry and the head stayed claimed by a ticket gone from DISPATCH, until the stale-claim sweep."""
    bucket = await js.key_value(namespace.bucket(streams.KV_DISPATCH_QUEUE))
    head, second, scheduler, clocks = await _head_claimed_elsewhere(js, namespace, bucket)

    async def lagging(kind: str) -> None:
        """A listing that brings nothing newer than the mirror."""

    monkeypatch.setattr(scheduler.queue, "reload_kind", lagging)
    try:
        decision = await scheduler.take("pose", seq=1, redelivered=True)
        assert decision.entry is not None
        assert (decision.entry.key, decision.entry.claimed_by, decision.fresh) == (head.key, 1, False)
        assert scheduler.queue.held_by("pose", 1) == (decision.entry, decision.revision)
        assert QueueEntry.model_validate_json((await bucket.get(second.key)).value or b"").claimed_by is None
        await clocks.settled(5.0)
    finally:
        await clocks.stop()


async def test_an_entry_written_while_a_kind_is_reread_stays_in_the_mirror(
    js: JetStreamContext, declared: Declarations, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ticket that finds its mirror empty re-reads the kind from KV; an entry this replica queues (or
    its watch brings) meanwhile, after the listing was taken, must not be wiped with the listing: no
    ticket would ever claim it (the top-up only sees the mirror)."""
    bucket = await js.key_value(namespace.bucket(streams.KV_DISPATCH_QUEUE))
    index = QueueIndex(bucket)
    now = time.time()
    old, gone, late = _entry("job_old", now - 3), _entry("job_gone", now - 2), _entry("job_late", now - 1)
    for entry in (old, gone):
        assert await index.enqueue(entry)
    await bucket.delete(gone.key)  # deleted behind the mirror's back (its watch is not running here)
    listing = queue_module.kv_entries

    async def listed_then_queued(*args: object, **kwargs: object) -> object:
        items = await listing(*args, **kwargs)  # type: ignore[arg-type]
        assert await index.enqueue(late)  # written after the listing was taken
        return items

    monkeypatch.setattr(queue_module, "kv_entries", listed_then_queued)
    await index.reload_kind("pose")
    assert set(index.by_kind["pose"]) == {old.key, late.key}, "the late entry stays, the deleted one goes"


async def test_an_entry_deleted_while_a_kind_is_reread_is_not_brought_back(
    js: JetStreamContext, declared: Declarations, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing may hold an entry whose delete the mirror learns before the listing is in: brought
    back, it would be a phantom no claim can take, and the top-up would hand it tickets for ever."""
    bucket = await js.key_value(namespace.bucket(streams.KV_DISPATCH_QUEUE))
    index = QueueIndex(bucket)
    now = time.time()
    kept, done = _entry("job_kept", now - 2), _entry("job_done", now - 1)
    for entry in (kept, done):
        assert await index.enqueue(entry)
    listing = queue_module.kv_entries

    async def listed_then_removed(*args: object, **kwargs: object) -> object:
        items = await listing(*args, **kwargs)  # type: ignore[arg-type]
        assert await index.remove(done.key)  # its attempt ended after the listing was taken
        return items

    monkeypatch.setattr(queue_module, "kv_entries", listed_then_removed)
    await index.reload_kind("pose")
    assert set(index.by_kind["pose"]) == {kept.key}, "the removed entry stays gone"


async def test_removing_an_entry_that_moved_on_answers_false(
    js: JetStreamContext, declared: Declarations, namespace: Namespace
) -> None:
    """Two replicas may both drop one attempt's entry (one supervised it after the other ran it): the
    second delete meets a changed revision, which is no error."""
    bucket = await js.key_value(namespace.bucket(streams.KV_DISPATCH_QUEUE))
    index = QueueIndex(bucket)
    entry = _entry("job_twice", time.time())
    assert await index.enqueue(entry)
    revision = index.by_kind["pose"][entry.key][1]
    claimed = await index.claim(entry, revision, seq=7)
    assert claimed is not None
    assert await index.remove(entry, revision) is False  # at the old revision: it moved on
    assert await index.remove(entry, claimed[1]) is True


async def test_a_reread_lists_the_kind_only_when_the_watch_lags_the_bucket(
    js: JetStreamContext, declared: Declarations, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ticket that finds its mirror empty while the watch has brought every write the bucket holds
    reads no listing (issue 34: a consumer and every entry, about one job in five with 2 replicas);
    an entry written behind a watch that does not bring it is still found by the listing."""
    bucket = await js.key_value(namespace.bucket(streams.KV_DISPATCH_QUEUE))
    other, watching = QueueIndex(bucket), QueueIndex(bucket)
    listed: list[str] = []
    listing = queue_module.kv_entries

    async def counted(kv: KeyValue, key_filter: str) -> object:
        listed.append(key_filter)
        return await listing(kv, key_filter)

    monkeypatch.setattr(queue_module, "kv_entries", counted)
    follow = asyncio.create_task(watching.follow())
    try:
        entry = _entry("job_watched", time.time())
        assert await other.enqueue(entry)  # another replica's write: only the watch brings it
        await watching.reload_kind("pose")  # waits for the watch, lists nothing
        assert listed == []
        assert set(watching.by_kind["pose"]) == {entry.key}
        assert await other.remove(entry, other.by_kind["pose"][entry.key][1])
        await watching.reload_kind("pose")
        assert listed == []
        assert watching.by_kind["pose"] == {}
    finally:
        await cancel_and_wait([follow])  # cancelled again if 3.11's wait_for swallowed it
    late = _entry("job_late", time.time())
    assert await other.enqueue(late)  # the watch is gone: the mirror lags the bucket
    monkeypatch.setattr(queue_module, "WATCH_LAG_S", 0.05)
    await watching.reload_kind("pose")
    assert listed == ["pose.>"]
    assert set(watching.by_kind["pose"]) == {late.key}
