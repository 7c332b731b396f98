"""Reading what KV stored since a point: every write after it, in order, and on an idle bucket one
message get and no consumer (a sweep every 15 s of an idle stack made one, issue 34's rest budget)."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig

from contracts.ids import tenant_key
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.streams import KV_JOBS
from contracts.subjects import Namespace
from services.dispatcher.fold.audit import FoldAudit
from services.dispatcher.job_events import JobEvents
from services.dispatcher.kv_writes import WriteLog, read_writes
from services.dispatcher.scheduling.sweeper import CreatedSweeper
from services.dispatcher.store import JobStore

URL = "https://example.com/v.mp4"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def test_writes_after_a_point_are_read_in_order_and_an_idle_bucket_makes_no_consumer(
    js: JetStreamContext, namespace: Namespace
) -> None:
    kv = await js.create_key_value(KeyValueConfig(bucket=namespace.bucket("writes"), history=5))
    stream = f"KV_{namespace.bucket('writes')}"
    seen: list[str] = []

    def on_write(key: str, msg: Msg) -> None:
        seen.append(key)

    assert await read_writes(kv, 0, on_write) == (0, 0)  # an empty bucket
    assert (await js.stream_info(stream)).state.consumer_count == 0
    await kv.put("a", b"1")
    await kv.put("b", b"1")
    last, read = await read_writes(kv, 0, on_write)
    assert (last, read, seen) == (2, 2, ["a", "b"])
    made = (await js.stream_info(stream)).state.consumer_count

    assert await read_writes(kv, last, on_write) == (last, 0)  # nothing since
    assert (await js.stream_info(stream)).state.consumer_count == made, "an idle read made a consumer"

    await kv.put("b", b"2")
    await kv.delete("a")
    assert await read_writes(kv, last, on_write) == (4, 2)
    assert seen == ["a", "b", "b", "a"]


async def test_the_sweeps_sharing_a_write_log_learn_every_write_from_one_read(
    js: JetStreamContext, namespace: Namespace
) -> None:
    kv = await js.create_key_value(KeyValueConfig(bucket=namespace.bucket(KV_JOBS), history=5))
    stream = f"KV_{namespace.bucket(KV_JOBS)}"
    store, writes = JobStore(kv), WriteLog(kv)
    sweeper = CreatedSweeper(store, JobEvents(js, namespace), 60.0, writes=writes)
    audit = FoldAudit(store, None, 30.0, 10, 100, 100, writes=writes)  # type: ignore[arg-type]  # no audit runs
    record = JobRecord.new("job_1", "acme", parse_job_spec({"kind": "pose", "inputs": {"video": {"url": URL}}}), NOW)
    await kv.create(tenant_key("acme", "job_1"), record.model_dump_json().encode())

    assert await sweeper.scan() == 1  # one consumer read it for both
    assert set(sweeper.candidates) == set(audit.candidates) == {"acme.job_1"}
    made = (await js.stream_info(stream)).state.consumer_count
    assert await audit.scan() == 0  # nothing new since the sweeper's read
    assert (await js.stream_info(stream)).state.consumer_count == made

    await kv.put(
        tenant_key("acme", "job_1"), record.model_copy(update={"status": JobStatus.QUEUED}).model_dump_json().encode()
    )
    assert await audit.scan() == 1
    assert sweeper.candidates == {}  # no longer created: learnt from the audit's read
    assert set(audit.candidates) == {"acme.job_1"}
