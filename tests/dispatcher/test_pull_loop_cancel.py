"""A pull loop ends at its cancel even when something under it swallowed the cancel.

Python 3.11's ``asyncio.wait_for`` returns a reply that lands together with a cancel and drops the
cancel, and nats-py's requests wait that way. A kind's ticket loop is busy with such requests under
load, so a replica's stop used to find its loop taking the next ticket, and waited for the second
cancel (``CANCEL_AGAIN_S``, 15 s): the fair-share test's teardown took 15 to 46 s on a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from contracts import streams
from contracts.streams import Declarations
from contracts.subjects import Namespace
from services.common.nats.connection import cancel_and_wait
from services.dispatcher.pull_loop import pull_one_at_a_time

STOP_WITHIN_S = 5.0
"""Far below the second cancel (15 s), far above a loaded machine's stop of a loop."""


async def test_a_cancel_swallowed_by_the_handler_still_ends_the_loop_before_its_next_pull(
    js: JetStreamContext, declared: Declarations, namespace: Namespace
) -> None:
    jobs = namespace.stream(streams.JOBS)
    subject = namespace.subject("uploads.acme.upl_1.completed")
    for n in range(2):
        await js.publish(subject, f"{n}".encode(), stream=jobs)
    config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=60)
    psub = await js.pull_subscribe(subject, durable="swallows", stream=jobs, config=config)
    handled: list[bytes] = []
    in_handler = asyncio.Event()

    async def handle(msg: Msg) -> None:
        handled.append(msg.data)
        in_handler.set()
        with contextlib.suppress(asyncio.CancelledError):  # as a request whose reply came with the cancel
            await asyncio.Event().wait()

    loop = asyncio.create_task(pull_one_at_a_time(psub, "swallows", handle))
    try:
        await asyncio.wait_for(in_handler.wait(), 10)
        loop.cancel()
        done, _ = await asyncio.wait([loop], timeout=STOP_WITHIN_S)
        assert loop in done, f"the loop went on after its cancel and handled {handled}"
        assert handled == [b"0"]  # the second message was never pulled
        info = await js.consumer_info(jobs, "swallows")
        assert (info.num_pending, info.num_ack_pending) == (1, 1)
    finally:
        await cancel_and_wait([loop], again_s=0.5, slow_s=0.25)
