"""A job's events as JOBS holds them, in stream order: what the audit and a refold fold from nothing.

Read by message gets that walk the job's subjects (``next_by_subj`` from the first sequence: one get a
stored event, then the end's 404), answered by the stream's leader (not a direct get, which any replica
may answer from behind), so nothing but the stream has to answer: no consumer is made, which needs
JetStream's meta leader, often away in the faults that make a refold necessary. A job with more than
``most_gets`` events is read by an ephemeral consumer instead (fewer messages), up to ``most_events``.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts import streams
from contracts.envelope import EventEnvelope
from contracts.subjects import Namespace, Subjects
from services.dispatcher.kv_writes import READ_BATCH, READ_TIMEOUT_S

HISTORY_GETS = 64
"""Events read by message gets at most; a longer history is read by a consumer."""


async def job_history(
    js: JetStreamContext, ns: Namespace, tenant: str, job_id: str, most_events: int, most_gets: int = HISTORY_GETS
) -> list[EventEnvelope] | None:
    """The job's events in JOBS, in stream order (``None``: more than ``most_events``). Bytes that are
    not an event are left out, as the fold dead-letters them."""
    stream, subject = ns.stream(streams.JOBS), Subjects(ns).job_events(tenant, job_id)
    events: list[EventEnvelope] = []
    seq = 1
    for _ in range(min(most_gets, most_events) + 1):
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:  # no event at or after ``seq``: the history is whole
            return events
        _append(events, msg.data)
        seq = (msg.seq or seq) + 1
    if most_gets >= most_events:
        return None
    return await _consumed_history(js, stream, subject, most_events)


async def _consumed_history(js: JetStreamContext, stream: str, subject: str, most: int) -> list[EventEnvelope] | None:
    """:func:`job_history` read by an ephemeral consumer (``None``: more than ``most`` events)."""
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0, mem_storage=True
    )
    sub = await js.pull_subscribe(subject, stream=stream, config=config)
    events: list[EventEnvelope] = []
    try:
        remaining = (await sub.consumer_info()).num_pending or 0
        if remaining > most:
            return None
        while remaining > 0:
            for msg in await sub.fetch(min(remaining, READ_BATCH), timeout=READ_TIMEOUT_S):
                remaining -= 1
                _append(events, msg.data)
    finally:
        await sub.unsubscribe()
    return events


def _append(events: list[EventEnvelope], data: bytes | None) -> None:
    try:
        events.append(EventEnvelope.from_json_bytes(data or b""))
    except ValueError:  # not an event: the fold dead-letters it, and so skips it here
        return
