"""One function publishes an envelope with its dedup id: a repeat is stored once, awaited or not."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from contracts import streams
from contracts.envelope import EventEnvelope
from contracts.events.jobs import JobLogPayload
from contracts.events.registry import EventType, make_event
from contracts.streams import Declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.declarations import apply_declarations
from services.common.nats.publish import MSG_ID, publish_event, publish_event_async


def _log(event_id: str) -> EventEnvelope:
    return make_event(
        EventType.JOB_LOG, JobLogPayload(message="hi"), tenant="acme", source="t", job_id="job_1", event_id=event_id
    )


async def test_a_repeated_event_is_stored_once_by_its_id(
    js: JetStreamContext, declared: Declarations, namespace: Namespace, subjects: Subjects
) -> None:
    subject, event = subjects.job_event("acme", "job_1", "log"), _log("e-1")
    first = await publish_event(js, subject, event)
    again = await publish_event(js, subject, event)
    batch = await asyncio.gather(*[await publish_event_async(js, subject, event) for _ in range(3)])
    assert (bool(first.duplicate), again.duplicate, [ack.duplicate for ack in batch]) == (False, True, [True] * 3)
    assert {first.seq, again.seq} | {ack.seq for ack in batch} == {first.seq}
    msg = await js.get_last_msg(namespace.stream(streams.JOBS), subjects.stored_job_event("acme", "job_1", "log"))
    assert msg.headers is not None
    assert msg.headers[MSG_ID] == "e-1"


async def test_an_explicit_msg_id_dedups_one_copy_per_id(
    js: JetStreamContext, declared: Declarations, subjects: Subjects
) -> None:
    subject, event = subjects.job_event("acme", "job_1", "log"), _log("e-2")
    acks = [await publish_event(js, subject, event, msg_id=f"copy:{n % 2}") for n in range(4)]
    assert [bool(ack.duplicate) for ack in acks] == [False, False, True, True]


async def test_a_publish_waits_for_its_stream_to_answer(
    js: JetStreamContext, decls: Declarations, namespace: Namespace, subjects: Subjects
) -> None:
    """No stream answers (NATS restarting, a cluster electing the stream's leader): the publish waits."""
    subject, event = subjects.job_event("acme", "job_1", "log"), _log("e-3")

    async def declare_later() -> None:
        await asyncio.sleep(0.3)  # the outage being simulated
        await apply_declarations(js, decls)

    later = asyncio.create_task(declare_later())
    ack = await publish_event(js, subject, event)
    await later
    assert ack.stream == namespace.stream(streams.JOBS)
    stored = subjects.stored_job_event("acme", "job_1", "log")
    assert (await js.get_last_msg(namespace.stream(streams.JOBS), stored)).data == event.to_json_bytes()
