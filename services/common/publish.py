"""Publishing an event envelope to JetStream, deduplicated by its id: the one place that says how.

JetStream drops a message whose ``Nats-Msg-Id`` it has already stored (within the stream's
duplicate window), so every envelope is published with its id as ``Nats-Msg-Id``
(:func:`dedup_headers`); a retried or repeated publish of the same logical event (same id, see
:mod:`contracts.event_ids`) is stored once, and the ack says ``duplicate``. ``msg_id`` overrides the
id for a message that is one of several per envelope (a dead letter per endpoint).

:func:`publish_event` waits for the stream's ack; :func:`publish_event_async` returns the ack's
future at once (``publish_async``), for a batch whose acks are gathered together.
"""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from nats.js.api import PubAck

from contracts.envelope import EventEnvelope

MSG_ID = "Nats-Msg-Id"


def dedup_headers(event: EventEnvelope, msg_id: str | None = None) -> dict[str, str]:
    """The headers that make a publish of ``event`` idempotent: ``Nats-Msg-Id`` = its id (or ``msg_id``)."""
    return {MSG_ID: msg_id or event.id}


async def publish_event(
    js: JetStreamContext, subject: str, event: EventEnvelope, *, msg_id: str | None = None
) -> PubAck:
    """Publish ``event`` on ``subject`` once (by its id) and wait for the stream's ack."""
    return await js.publish(subject, event.to_json_bytes(), headers=dedup_headers(event, msg_id))


async def publish_event_async(js: JetStreamContext, subject: str, event: EventEnvelope) -> asyncio.Future[PubAck]:
    """Publish ``event`` on ``subject`` once (by its id) without waiting: the future of its ack."""
    return await js.publish_async(subject, event.to_json_bytes(), headers=dedup_headers(event))
