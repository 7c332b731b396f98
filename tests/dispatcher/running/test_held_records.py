"""Held attempts follow their jobs' records as KV ``jobs`` stores them
(:mod:`services.dispatcher.running.held_records`), on a real server: every revision stored after the read
arrives, in order, and nothing else (no write that lost its compare-and-set, no other job's, no
delete); an older revision never replaces a newer one; after a reconnect the records are read again."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.envelope import utc_now
from contracts.ids import new_id, tenant_key
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.subjects import Subjects
from services.dispatcher.running.held_records import HeldRecords
from services.dispatcher.store import JobStore
from tests.support.dispatcher import POSE


async def _created(kv: KeyValue) -> tuple[JobRecord, int]:
    record = JobRecord.new(new_id("job"), "acme", parse_job_spec(POSE), utc_now())
    return record, await kv.create(tenant_key("acme", record.id), record.model_dump_json().encode())


async def _write(kv: KeyValue, record: JobRecord, revision: int) -> int:
    return await kv.update(tenant_key("acme", record.id), record.model_dump_json().encode(), last=revision)


async def test_a_followed_record_gets_each_revision_stored_after_its_read_and_nothing_else(
    nc: NatsClient, jobs_kv: KeyValue, subjects: Subjects
) -> None:
    record, first = await _created(jobs_kv)
    other, other_revision = await _created(jobs_kv)
    records = HeldRecords(nc, subjects, JobStore(jobs_kv))
    follower = await records.follow("acme", record.id)
    assert await records.read(follower) == (record, first)
    seen: list[tuple[JobStatus, int]] = []
    follower.hand_to(lambda r, revision: seen.append((r.status, revision)))
    assert seen == [(JobStatus.CREATED, first)], "the newest so far is handed over at once"

    queued = record.model_copy(update={"status": JobStatus.QUEUED})
    second = await _write(jobs_kv, queued, first)
    with pytest.raises(KeyWrongLastSequenceError):  # a write that loses its compare-and-set
        await _write(jobs_kv, record.model_copy(update={"status": JobStatus.CANCELED}), first)
    await _write(jobs_kv, other.model_copy(update={"status": JobStatus.QUEUED}), other_revision)  # another job
    third = await _write(jobs_kv, queued.model_copy(update={"status": JobStatus.DISPATCHED}), second)
    await jobs_kv.delete(tenant_key("acme", record.id))
    again = await jobs_kv.create(tenant_key("acme", record.id), record.model_dump_json().encode())
    # the last one stored comes last: whatever else had been republished to this job came before it
    await wait_for(lambda: seen[-1][1] == again, 5.0, "the last revision")
    expected = [(JobStatus.CREATED, first), (JobStatus.QUEUED, second), (JobStatus.DISPATCHED, third)]
    assert seen == [*expected, (JobStatus.CREATED, again)]
    await records.stop(follower)
    assert records.following == set()


async def test_an_older_revision_never_replaces_a_newer_one(
    nc: NatsClient, jobs_kv: KeyValue, subjects: Subjects
) -> None:
    record, first = await _created(jobs_kv)
    records = HeldRecords(nc, subjects, JobStore(jobs_kv))
    follower = await records.follow("acme", record.id)
    newer = record.model_copy(update={"status": JobStatus.RUNNING})
    follower.offer(newer, first + 10)
    assert await records.read(follower) == (record, first)  # an old read comes back late
    assert follower.latest == (newer, first + 10)
    await records.stop(follower)


async def test_after_a_reconnect_the_followed_records_are_read_again(
    nc: NatsClient, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects
) -> None:
    record, first = await _created(jobs_kv)
    records = HeldRecords(nc, subjects, JobStore(jobs_kv))
    follower = await records.follow("acme", record.id)
    await records.read(follower)
    assert follower.subscription is not None
    await follower.subscription.unsubscribe()  # what a connection that is down misses
    second = await _write(jobs_kv, record.model_copy(update={"status": JobStatus.QUEUED}), first)
    assert await records.refresh() == 0, "no reconnect: nothing read"
    assert follower.latest is not None
    assert follower.latest[1] == first
    nc.stats["reconnects"] += 1
    assert await records.refresh() == 1
    assert follower.latest is not None
    assert follower.latest[1] == second
    assert await records.refresh() == 0, "once per reconnect"
