"""The webhook fan-out tells its ``unavailable`` (the notifier's stuck-server watch) when JetStream fails
it: here its server is stopped (SIGSTOP keeps the TCP connection, as a node cut off from its cluster
does), so binding its consumer times out."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import nats
import pytest

from contracts.subjects import Namespace
from services.common.nats.connection import cancel_and_wait
from services.common.nats.server.embedded import EmbeddedNats
from services.notifier.state import open_state
from services.notifier.webhooks.fanout import FanOut
from services.notifier.webhooks.targets import JobHooks
from tests.support.notifier import notifier_settings
from tests.support.stopping import sigstop

pytestmark = pytest.mark.timeout(90)


async def test_a_fanout_whose_server_stopped_tells_it(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", sync_interval="2m").start()
    assert server.pid is not None
    try:
        settings = notifier_settings(server.url, Namespace(), tmp_path)
        nc = await nats.connect(server.url, max_reconnect_attempts=-1)
        try:
            state = await open_state(settings, nc)
            told = asyncio.Event()
            fanout = FanOut(settings, state.js, state.endpoints, JobHooks(state.jobs), state.delivery, told.set)
            sigstop(server.pid)
            running = asyncio.create_task(fanout.run())
            try:
                await asyncio.wait_for(told.wait(), 30)
            finally:
                os.kill(server.pid, signal.SIGCONT)
                await cancel_and_wait([running])
        finally:
            await nc.close()
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.stop()
