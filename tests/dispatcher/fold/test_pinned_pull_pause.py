"""A pinned pull across a nats-server paused (SIGSTOP) past its request's expiry, then resumed.

The pause leaves the connection up (no reconnect), so the open request's status is overdue while the
server sleeps; once it runs again the holder must still settle: the late status (or, failing that,
time) ends the uncertainty, so letting go of the pin finishes, and waiting for it never spins.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import StreamConfig

from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.fold.pinned import requests as pull_requests
from services.dispatcher.fold.pinned.consumer import PinnedConsumer
from services.dispatcher.fold.pinned.pull import PinnedPull
from tests.support.stopping import sigstop

pytestmark = [pytest.mark.faults, pytest.mark.timeout(90)]
PAUSE_S = 4.0


@pytest.fixture
async def paused_server(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedNats, NatsClient]]:
    """A nats-server of this test alone (it is paused) and one client connection to it."""
    with EmbeddedNats(tmp_path / "nats") as server:
        nc = await nats.connect(server.url, max_reconnect_attempts=-1)
        try:
            yield server, nc
        finally:
            assert server.pid is not None
            os.kill(server.pid, signal.SIGCONT)
            await nc.close()


async def test_a_pull_overdue_across_a_pause_settles_without_spinning(
    paused_server: tuple[EmbeddedNats, NatsClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, nc = paused_server
    monkeypatch.setattr(pull_requests, "STATUS_GRACE_S", 0.5)  # overdue within the pause
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="PAUSED", subjects=["paused.>"]))
    consumer = PinnedConsumer("PAUSED", "fold", ("paused.>",), ack_wait_s=8.0, max_deliver=3, max_ack_pending=64,
                              pin_timeout_s=10.0)  # fmt: skip
    await consumer.ensure(nc, None)
    puller = PinnedPull(nc, consumer)
    await puller.start()
    await js.publish("paused.a", b"first")
    (first,) = await puller.batch(64, 1.0)
    await first.ack_sync()
    assert puller.pin is not None

    reconnects = nc.stats["reconnects"]
    assert server.pid is not None
    sigstop(server.pid)
    try:  # the holder keeps pulling while the server sleeps: its request's status is overdue
        began = time.monotonic()
        while time.monotonic() - began < PAUSE_S:
            assert await puller.batch(64, 1.0) == []
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert nc.stats["reconnects"] == reconnects, "the pause must not have cost a reconnect"

    # Letting go, as the fold does: no new request until nothing of this client's is in flight.
    calls, began, cpu = 0, time.monotonic(), time.process_time()
    while not puller.idle:
        assert time.monotonic() - began < consumer.pin_timeout_s + 5, "the pull never settled"
        assert await puller.batch(64, 1.0, more=False) == []
        calls += 1
    assert calls < 50, f"{calls} calls to wait for idle: a spin"
    assert time.process_time() - cpu < 2.0
    assert time.monotonic() - began < consumer.pin_timeout_s, "settled by time only: the late status was missed"
    assert await puller.unpin()
    await puller.close()
