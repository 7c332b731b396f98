"""A new job's record is not read back at ``job.created``: the gateway's create gave its revision.

The gateway creates a job's first record in KV, then publishes ``job.created`` with that record's
revision in a header (:data:`~contracts.events.registry.CREATED_RECORD_REVISION`). The fold makes the
same record from the event and takes the revision instead of reading the record (issue 34: a message
get and its reply a job). These tests count the fold's reads, check that the record it writes next is
the one a read would have given, and that a copy of the event never carries the header.
"""

from __future__ import annotations

import json

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.envelope import EventEnvelope, utc_now
from contracts.events.registry import CREATED_RECORD_REVISION, job_created_event
from contracts.ids import new_id, tenant_key
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.common.nats.publish import REPLAY_OF, copied_headers, publish_event
from services.dispatcher.fold.batch_records import BatchRecords, JobRun, RecordCache
from services.dispatcher.fold.records import apply
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, local_route, submit, wait_record


@pytest.fixture
def fold_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The job ids of the fold's reads of a record from KV that it had no reason to make: each load its cache
    does not answer, less those after the cache let go of the record on purpose (a compare-and-set lost to
    another writer or a transient error drops it; a new pin empties the cache). A loaded machine makes those
    at random: the claim of a lingering job's ticket writes its record before the fold does (CI: 2 reads)."""
    reads: list[str] = []
    forgotten: set[str] = set()
    load, stale, reset = BatchRecords.load, BatchRecords.stale, RecordCache.reset

    async def counted(self: BatchRecords, run: JobRun) -> None:
        if self.cache.get(run.tenant, run.job_id) is None and run.job_id not in forgotten:
            reads.append(run.job_id)
        await load(self, run)

    def dropped(self: BatchRecords, run: JobRun) -> None:
        forgotten.add(run.job_id)
        stale(self, run)

    def emptied(self: RecordCache, pin: str | None) -> None:
        forgotten.update(job_id for _, job_id in self._records)
        reset(self, pin)

    monkeypatch.setattr(BatchRecords, "load", counted)
    monkeypatch.setattr(BatchRecords, "stale", dropped)
    monkeypatch.setattr(RecordCache, "reset", emptied)
    return reads


async def test_the_fold_writes_a_new_jobs_next_record_without_reading_the_first(
    fold_reads: list[str],
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
) -> None:
    await start_dispatcher({"pose": local_route("noop")}, fold_partitions=1)
    job_id = await submit(js, jobs_kv, subjects, POSE)
    record = await wait_record(jobs_kv, job_id, lambda r: r.terminal, 60)
    assert record.status is JobStatus.SUCCEEDED
    assert fold_reads.count(job_id) == 0  # the created record's revision came with job.created, then the cache

    key = tenant_key("acme", job_id)
    created = await js.get_last_msg(namespace.stream(JOBS), subjects.stored_job_event("acme", job_id, "created"))
    first, second = (await jobs_kv.history(key))[:2]
    assert (created.headers or {}).get(CREATED_RECORD_REVISION) == str(first.revision)
    assert first.value is not None
    assert second.value is not None
    made = apply(None, EventEnvelope.from_json_bytes(created.data or b"{}"))
    assert made == JobRecord.model_validate_json(first.value)  # the record the fold made is the one created
    # ... and its next write went over the created revision (a compare-and-set: no conflict, no read)
    assert JobRecord.model_validate_json(second.value).status is not JobStatus.CREATED  # queued, or on (a linger)


async def test_a_created_event_without_the_revision_is_read_first(
    fold_reads: list[str],
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
) -> None:
    await start_dispatcher({"pose": local_route("noop")}, fold_partitions=1)
    job_id = await submit(js, jobs_kv, subjects, POSE, revision=False)  # as the sweeper or a retried request
    done = await wait_record(jobs_kv, job_id, lambda r: r.terminal, 60)
    assert done.status is JobStatus.SUCCEEDED
    assert fold_reads.count(job_id) == 1  # read once, at job.created; the cache after it


def test_a_copy_of_a_created_event_does_not_carry_the_revision_of_its_record() -> None:
    stored = {CREATED_RECORD_REVISION: "41", "traceparent": "00-abc-def-01", "Nats-Msg-Id": "created-job_1"}
    copied = copied_headers(stored) | {REPLAY_OF: json.dumps({"stream": "JOBS", "seq": 7})}
    assert CREATED_RECORD_REVISION not in copied  # a replayed job.created is read, its record having moved
    assert copied["traceparent"] == stored["traceparent"]


async def test_a_created_event_this_fold_cannot_read_still_releases_the_job_it_reads(
    fold_reads: list[str],
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
) -> None:
    """A newer gateway's ``job.created`` with a field this fold does not know makes no record here; the
    record is read and the job released on it, as without the header."""
    await start_dispatcher({"pose": local_route("noop")}, fold_partitions=1)
    job_id = new_id("job")
    record = JobRecord.new(job_id, "acme", parse_job_spec(POSE), utc_now())
    revision = await jobs_kv.create(tenant_key("acme", job_id), record.model_dump_json().encode())
    event = job_created_event(record)
    newer = event.model_copy(update={"data": {**event.data, "a_later_field": 1}})
    headers = {CREATED_RECORD_REVISION: str(revision)}
    await publish_event(js, subjects.job_event("acme", job_id, "created"), newer, headers=headers)
    done = await wait_record(jobs_kv, job_id, lambda r: r.terminal, 60)
    assert done.status is JobStatus.SUCCEEDED
    assert fold_reads.count(job_id) == 1  # read at job.created, as without the header
