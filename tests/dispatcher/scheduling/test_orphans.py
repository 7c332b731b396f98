"""A job whose ``job.created`` was never published is found by the sweeper and runs."""

from __future__ import annotations

from datetime import timedelta

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import streams
from contracts.envelope import utc_now
from contracts.events.registry import job_created_event
from contracts.ids import new_id, tenant_key
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.subjects import Namespace, Subjects
from services.dispatcher.job_events import JobEvents
from services.dispatcher.scheduling.sweeper import CreatedSweeper
from services.dispatcher.store import JobStore
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, read_record, submit, wait_record

S = JobStatus


async def test_a_created_record_without_its_event_is_published_once_and_runs(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    job_id = new_id("job")
    record = JobRecord.new(job_id, "acme", parse_job_spec(POSE), utc_now())
    await jobs_kv.create(tenant_key("acme", job_id), record.model_dump_json().encode())  # the publish "failed"
    dispatcher = await start_dispatcher(
        {"pose": local_route("noop")}, created_republish_after_s=0.5, created_sweep_interval_s=0.2
    )
    assert (await wait_record(jobs_kv, job_id, lambda r: r.terminal)).status is S.SUCCEEDED
    created = [e for e in event_log.events[job_id] if e.type == "job.created"]
    assert [e.id for e in created] == [f"created-{job_id}"]
    late = job_created_event(record)  # the gateway's original, arriving late: stored once
    ack = await js.publish(
        subjects.job_event("acme", job_id, "created"), late.to_json_bytes(), headers={"Nats-Msg-Id": late.id}
    )
    assert ack.duplicate
    assert dispatcher.metrics()["created_republished"] == 1


async def test_a_job_whose_created_is_stored_is_left_alone(
    js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, namespace: Namespace, event_log: EventLog
) -> None:
    waiting = await submit(js, jobs_kv, subjects, {"kind": "pose", "inputs": {"video": {"upload_id": "upl_x"}}})
    record = await read_record(jobs_kv, waiting)
    later = record.created_at + timedelta(hours=1)
    sweeper = CreatedSweeper(JobStore(jobs_kv), JobEvents(js, namespace), 60.0, clock=lambda: later)
    sweeper.on_record(record)
    assert await sweeper.sweep() == []
    assert (sweeper.confirmed, sweeper.republished, sweeper.candidates) == (1, 0, {})
    await event_log.wait(lambda: "job.created" in event_log.types(waiting))
    assert event_log.types(waiting) == ["job.created"]


async def test_a_record_is_due_only_after_the_setting(
    js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace
) -> None:
    record = JobRecord.new(new_id("job"), "acme", parse_job_spec(POSE), utc_now())
    await jobs_kv.create(tenant_key("acme", record.id), record.model_dump_json().encode())
    soon = record.created_at + timedelta(seconds=59)
    sweeper = CreatedSweeper(JobStore(jobs_kv), JobEvents(js, namespace), 60.0, clock=lambda: soon)
    sweeper.on_record(record)
    assert await sweeper.sweep() == []
    sweeper.clock = lambda: soon + timedelta(seconds=1)
    assert await sweeper.sweep() == [record.id]
    sweeper.on_record(record)  # another replica, or a second sweep: stored once all the same
    assert await sweeper.sweep() == []
    assert sweeper.republished == 1
    subject = Subjects(namespace).stored_job_event("acme", record.id, "created")
    msg = await js.get_last_msg(namespace.stream(streams.JOBS), subject)
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == f"created-{record.id}"


async def test_a_scan_learns_created_records_from_what_kv_stored_and_reads_each_write_once(
    js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace
) -> None:
    spec = parse_job_spec(POSE)
    waiting, moved = (JobRecord.new(new_id("job"), "acme", spec, utc_now()) for _ in range(2))
    revisions = {}
    for record in (waiting, moved):
        revisions[record.id] = await jobs_kv.create(tenant_key("acme", record.id), record.model_dump_json().encode())
    sweeper = CreatedSweeper(JobStore(jobs_kv), JobEvents(js, namespace), 60.0)
    assert await sweeper.scan() == 2
    assert set(sweeper.candidates) == {tenant_key("acme", waiting.id), tenant_key("acme", moved.id)}

    queued = moved.model_copy(update={"status": S.QUEUED})
    await jobs_kv.update(tenant_key("acme", moved.id), queued.model_dump_json().encode(), last=revisions[moved.id])
    assert await sweeper.scan() == 1, "only what was stored since the last scan"
    assert set(sweeper.candidates) == {tenant_key("acme", waiting.id)}, "a record that moved on is forgotten"
    tenant, job_id, since = sweeper.candidates[tenant_key("acme", waiting.id)]
    assert (tenant, job_id) == ("acme", waiting.id)
    assert abs((since - waiting.created_at).total_seconds()) < 5, "due from when it was stored"
    assert await sweeper.scan() == 0
