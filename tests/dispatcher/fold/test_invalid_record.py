"""A job record that no longer validates is failed (``invalid_record``) by the fold, never dead-lettered.

What an older gateway stored for ``{"camera_mount": {"xyz": [0, 0, Infinity]}}``: ``null`` in the
record and in its ``job.created``. The fold used to fail on every read of the record, dead-letter the
event after its deliveries and leave the session ``created`` forever. Now the dispatcher writes the
failed record in its place and publishes its ``job.failed``; the fold goes on with other jobs. Real
nats-server, both folds (serial and partitioned).
"""

from __future__ import annotations

import json

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import streams
from contracts.envelope import utc_now
from contracts.events.registry import job_created_event
from contracts.ids import new_id, tenant_key
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.subjects import Subjects
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, submit, wait_record

SPLAT = {"kind": "splat", "params": {"camera_mount": {"xyz": [0, 0, 1]}}}
INVALID_RECORD = "invalid_record"


def with_null_offset(data: dict[str, object], *path: str) -> bytes:
    """``data`` with ``null`` where the camera offset's z was (under ``path``), as JSON bytes."""
    node: object = data
    for part in path:
        assert isinstance(node, dict)
        node = node[part]
    assert isinstance(node, dict)
    node["params"]["camera_mount"]["xyz"][2] = None
    return json.dumps(data).encode()


async def create_as_an_older_gateway_did(js: JetStreamContext, kv: KeyValue, subjects: Subjects) -> str:
    """The record and ``job.created`` of a splat session, each holding ``null`` for its camera offset's z."""
    job_id = new_id("job")
    record = JobRecord.new(job_id, "acme", parse_job_spec(SPLAT), utc_now())
    await kv.create(tenant_key("acme", job_id), with_null_offset(json.loads(record.model_dump_json()), "spec"))
    created = job_created_event(record)
    body = with_null_offset(json.loads(created.to_json_bytes()), "data", "spec")
    await js.publish(subjects.job_event("acme", job_id, "created"), body, headers={"Nats-Msg-Id": created.id})
    return job_id


@pytest.mark.parametrize("partitions", [0, 3], ids=["serial", "partitioned"])
async def test_the_fold_fails_a_job_whose_record_no_longer_validates_and_goes_on(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
    partitions: int,
) -> None:
    routes = {"pose": local_route("noop"), "splat": local_route("noop")}
    dispatcher = await start_dispatcher(routes, fold_partitions=partitions, event_retry_delay_s=0.05)
    broken = await create_as_an_older_gateway_did(js, jobs_kv, subjects)
    healthy = await submit(js, jobs_kv, subjects, POSE)
    failed = await wait_record(jobs_kv, broken, lambda r: r.terminal)
    assert (await wait_record(jobs_kv, healthy, lambda r: r.terminal)).status is JobStatus.SUCCEEDED
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert (failed.error.code, failed.error.details) == (INVALID_RECORD, {"reset": ["spec.params"]})
    await event_log.wait(lambda: "job.failed" in event_log.types(broken))
    told = event_log.first(broken, "job.failed")
    assert told is not None
    assert told.data["error"]["code"] == INVALID_RECORD
    assert event_log.types(broken) == ["job.created", "job.failed"]
    assert dispatcher.guard is not None
    assert dispatcher.guard.metrics() == {"dead_lettered": {}, "handler_errors": {}}  # not even one retry
    dead = await js.stream_info(dispatcher.settings.ns.stream(streams.DEADLETTER))
    assert dead.state.messages == 0
