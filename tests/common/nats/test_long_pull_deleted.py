"""A long pull open on a consumer that is deleted ends on the deletion's advisory
(:class:`~services.common.nats.long_pull.LongPull`: the dispatch tickets', the uploads' completions' and
the webhook fan-out's puller).

A fresh-clone run's server sent no 409 to the uploads' request when its consumer was deleted, and the
loop waited out the request's 30 s. This server does send it, so the puller here does not see it: the
test asserts the refusal (503), which only a request sent after the deletion gets, well before the
open request's life runs out.
"""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from bench.harness.waiting import wait_for
from contracts.subjects import Namespace
from services.common.nats.connection import cancel_and_wait
from services.common.nats.long_pull import LongPull, PullEnded, PullInbox

REQUEST_S = 60.0
"""The open request's life: longer than the test's own time-out."""
pytestmark = pytest.mark.timeout(45)


@pytest.fixture(autouse=True)
def no_deleted_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """The puller never sees the server's 409 to its waiting request: the deletion's advisory has to end it."""
    on_msg = PullInbox._on_msg

    async def without_409(self: PullInbox, msg: Msg) -> None:
        if (msg.headers or {}).get("Status") != "409":
            await on_msg(self, msg)

    monkeypatch.setattr(PullInbox, "_on_msg", without_409)


async def test_a_deleted_consumers_open_pull_ends_and_the_next_is_refused(
    nc: NatsClient, js: JetStreamContext, namespace: Namespace
) -> None:
    stream = namespace.stream("TAKEN")
    await js.add_stream(StreamConfig(name=stream, subjects=[namespace.subject("taken.>")]))
    await js.add_consumer(stream, ConsumerConfig(durable_name="take", ack_policy=AckPolicy.EXPLICIT))
    puller = LongPull(nc, stream, "take", expires_s=REQUEST_S)
    taking = asyncio.create_task(puller.next())
    try:

        async def waiting() -> bool:
            return bool((await js.consumer_info(stream, "take")).num_waiting)

        await wait_for(waiting, timeout_s=10, what="the open pull on the consumer's books")
        await js.delete_consumer(stream, "take")
        with pytest.raises(PullEnded) as ended:
            await asyncio.wait_for(taking, 30)
        assert ended.value.status == "503"
        assert puller.elections == 1
    finally:
        await cancel_and_wait([taking])
        await puller.close()
