"""A place told in ``job.queued`` before its entry reached this replica's mirror is not told again.

The fold publishes ``job.queued`` (with the place) before it makes the queue entry (a KV create), and the
entry is in the mirror only once made. An update of the tenant's places (another job of theirs started)
that ran in between used to forget the told place, as it forgets those of entries the mirror dropped; the
entry's own announcement then told the same place again as a ``job.position`` (a feed saw 6, 6, 5, ...:
the queue position test failed so under load). Real KV, real JOBS stream."""

from __future__ import annotations

import time

import pytest
from nats.js import JetStreamContext

from contracts import streams
from contracts.streams import Declarations
from contracts.subjects import Namespace
from services.dispatcher.scheduling import positions as positions_module
from services.dispatcher.scheduling.positions import Positions
from services.dispatcher.scheduling.queue import QueueIndex
from services.dispatcher.scheduling.queue_entries import QueueEntry
from services.dispatcher.scheduling.run_times import RunTimes
from tests.support.dispatcher import EventLog


async def _positions(js: JetStreamContext, namespace: Namespace) -> tuple[Positions, QueueIndex]:
    """Positions over a mirror no watch feeds: it holds what this test makes and removes."""
    queue = QueueIndex(await js.key_value(namespace.bucket(streams.KV_DISPATCH_QUEUE)))
    runtimes = RunTimes(await js.key_value(namespace.bucket(streams.KV_DISPATCH_RUNTIMES)), 20)
    return Positions(js, namespace, queue, runtimes, {"pose": 1}, lambda _: 1.0, top=10, interval_s=0.0), queue


def _told(log: EventLog, job_id: str) -> list[int]:
    """The places ``job.position`` told of ``job_id``, in stream order."""
    return [e.data["position"] for e in log.events[job_id] if e.type == "job.position"]


def _entry(job_id: str) -> QueueEntry:
    return QueueEntry(tenant="acme", job_id=job_id, kind="pose", attempt=1, enqueued_at=time.time())


async def test_a_place_told_before_the_mirror_has_its_entry_is_not_told_again(
    js: JetStreamContext, declared: Declarations, namespace: Namespace, event_log: EventLog
) -> None:
    positions, queue = await _positions(js, namespace)
    entry = _entry("job-told")
    told = await positions.told_in_queued(entry)  # what its job.queued says
    assert told.position == 1
    await positions._update("pose", "acme")  # a start of acme's moved the places: the mirror lacks the entry
    assert await queue.enqueue(entry)  # now in the mirror
    await positions.queued(entry)  # the entry's own announcement: the same place, so nothing
    await positions._update("pose", "acme")
    better = _entry("job-better")  # a control: a place that did move is told
    await positions.queued(better)
    assert await queue.enqueue(better)
    assert await queue.remove(entry.key)  # job-told started: gone from the mirror
    await positions._update("pose", "acme")  # job-better moved up from 2 to 1
    await event_log.wait(lambda: len(_told(event_log, better.job_id)) == 2, 10)
    assert _told(event_log, better.job_id) == [2, 1]
    assert _told(event_log, entry.job_id) == []  # stream order: anything told of it came before
    assert entry.key not in positions.published  # dropped by the mirror: forgotten


async def test_a_told_place_whose_entry_never_comes_is_forgotten_after_a_while(
    js: JetStreamContext, declared: Declarations, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    positions, _ = await _positions(js, namespace)
    await positions.told_in_queued(_entry("job-lost"))
    await positions._update("pose", "acme")
    assert "pose.acme.job-lost.1" in positions.published  # kept while it may yet come
    monkeypatch.setattr(positions_module, "UNSEEN_KEPT_S", 0.0)
    await positions._update("pose", "acme")
    assert positions.published == {}  # bounded: not kept for good


async def test_a_place_counts_the_entries_ahead_still_being_made(
    js: JetStreamContext, declared: Declarations, namespace: Namespace
) -> None:
    """The fold tells a job's place, publishes its ``job.queued``, then makes the entry: a job queued
    meanwhile (another partition; a client that saw the first ``job.queued`` and submitted again) is
    not told a place one short, the flake of the queue position test's ETA."""
    positions, queue = await _positions(js, namespace)
    first, second, third = _entry("job-1"), _entry("job-2"), _entry("job-3")
    assert (await positions.told_in_queued(first)).position == 1  # its KV create not yet done
    assert (await positions.told_in_queued(second)).position == 2  # counts the first
    assert await queue.enqueue(first)  # made, in the mirror: counted once, not twice
    assert (await positions.told_in_queued(third)).position == 3
    positions.made(first)
    positions.made(third)
    positions.made(second)  # never made (its create failed): no longer ahead of anyone
    assert (await positions.told_in_queued(_entry("job-4"))).position == 2
    earlier = QueueEntry(tenant="acme", job_id="job-0", kind="pose", attempt=1, enqueued_at=first.enqueued_at - 1)
    assert (await positions.told_in_queued(earlier)).position == 1  # the one made later, behind it, is not counted
    other = QueueEntry(tenant="globex", job_id="job-g", kind="pose", attempt=1, enqueued_at=time.time())
    assert (await positions.told_in_queued(other)).position == 1  # another tenant's line
