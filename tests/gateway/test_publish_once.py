"""``GatewayState.publish_once``: an event JOBS already holds for its subject is not published again.

The check covers a retried request past the stream's duplicate window (a crash between the KV write and
the publish, the client retrying later), where the next event has another ``Nats-Msg-Id``. JOBS stores a
job event with its slot token, so the check reads it as stored: read as published, it found nothing and
every retry stored the event again.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from contracts.events.jobs import JobCancelRequestedPayload
from contracts.events.registry import EventType, make_event
from contracts.subjects import Namespace
from tests.support.gateway import Gateway, stored


async def test_an_event_already_stored_is_not_published_again(
    gateway: Gateway, js: JetStreamContext, namespace: Namespace
) -> None:
    state = gateway.app.state.gateway
    subject = state.subjects.job_event("acme", "job_once", "cancel_requested")
    for _ in range(2):  # two events, two ids: only the check keeps the second out
        payload = JobCancelRequestedPayload()
        event = make_event(EventType.JOB_CANCEL_REQUESTED, payload, tenant="acme", source="gateway", job_id="job_once")
        await state.publish_once(subject, event)
    assert [e.type for e in await stored(js, namespace, subject)] == ["job.cancel_requested"]
