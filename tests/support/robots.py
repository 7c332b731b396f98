"""Reading robots' joint samples back from TELEMETRY, for the gateway's and the publisher's tests."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.envelope import EventEnvelope
from contracts.events.registry import parse_payload_as
from contracts.events.robots import JointSample
from contracts.streams import TELEMETRY
from contracts.subjects import Namespace


async def read_samples(
    js: JetStreamContext, ns: Namespace, subject: str, count: int, timeout_s: float = 20.0
) -> list[JointSample]:
    """The first ``count`` samples on ``subject``, oldest first, read with an ordered consumer; envelopes checked."""
    envelopes: list[EventEnvelope] = []
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        envelopes.append(EventEnvelope.from_json_bytes(msg.data))
        if len(envelopes) >= count:
            done.set()

    sub = await js.subscribe(subject, stream=ns.stream(TELEMETRY), cb=on_msg, ordered_consumer=True)
    try:
        async with asyncio.timeout(timeout_s):
            await done.wait()
    finally:
        await sub.unsubscribe()
    assert all(e.type == "robot.joints" and e.source == "gateway" for e in envelopes)
    return [parse_payload_as(e, JointSample) for e in envelopes[:count]]
