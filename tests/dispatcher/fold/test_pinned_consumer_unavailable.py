"""The fold's consumers are made even when JetStream does not answer for a while (a cluster electing
its leaders, a paused server): each API request is sent again while NATS is away.

Found by the network-fault suite: on a busy 3-node cluster a dispatcher's start asked for
``CONSUMER.INFO`` once, got no answer within the request timeout and failed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import nats
import pytest
from nats.js.api import RetentionPolicy, StreamConfig

from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.fold.pinned import consumer as pinned_consumer
from services.dispatcher.fold.pinned.consumer import PinnedConsumer
from tests.support.stopping import sigstop

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]
REQUEST_TIMEOUT_S = 0.5
PAUSE_S = 2.0
"""Longer than a request's timeout: the first request of the ensure goes unanswered."""


async def test_a_consumer_is_ensured_across_a_pause_longer_than_a_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pinned_consumer, "API_TIMEOUT_S", REQUEST_TIMEOUT_S)
    with EmbeddedNats(tmp_path / "nats") as server:
        assert server.pid is not None
        nc = await nats.connect(server.url, max_reconnect_attempts=-1)
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="WQ", subjects=["wq.>"], retention=RetentionPolicy.WORK_QUEUE))
            consumer = PinnedConsumer("WQ", "fold", ("wq.>",), ack_wait_s=8.0, max_deliver=3, max_ack_pending=64,
                                      pin_timeout_s=10.0)  # fmt: skip
            sigstop(server.pid)
            try:
                ensuring = asyncio.create_task(consumer.ensure(nc, None))
                await asyncio.sleep(PAUSE_S)  # the pause (the fault), not a wait for a result
                assert not ensuring.done()  # no answer yet, and no failure either
            finally:
                os.kill(server.pid, signal.SIGCONT)
            await asyncio.wait_for(ensuring, 30)
            assert (await js.consumer_info("WQ", "fold")).config.filter_subjects == ["wq.>"]
        finally:
            await nc.close()
