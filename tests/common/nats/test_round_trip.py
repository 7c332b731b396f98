"""A round trip that times out while the server is paused leaves the connection whole."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import nats
import pytest

from services.common.nats.round_trip import round_trip
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.stopping import sigstop

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]


async def test_a_round_trip_timing_out_on_a_paused_server_keeps_the_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """nats-py's own ``flush(timeout)`` would leave a cancelled future for the late PONG, which its
    read loop then fails on ("nats: encountered error", InvalidStateError)."""
    errors: list[BaseException] = []

    async def on_error(exc: BaseException) -> None:
        errors.append(exc)

    with EmbeddedNats(tmp_path / "nats") as server:
        nc = await nats.connect(server.url, error_cb=on_error, max_reconnect_attempts=-1)
        assert server.pid is not None
        try:
            assert await round_trip(nc, 2.0)
            sigstop(server.pid)
            try:
                waits = [round_trip(nc, 0.3) for _ in range(3)]  # one PING in flight, waited on by all
                assert await asyncio.gather(*waits) == [False] * 3
                assert not await round_trip(nc, 1.5)  # past nats-py flush timeouts of a second
            finally:
                os.kill(server.pid, signal.SIGCONT)
            assert await round_trip(nc, 5.0)  # the late PONG landed on a live future
            await asyncio.sleep(0.2)
            assert await round_trip(nc, 5.0)
            assert (nc.stats["reconnects"], errors) == (0, [])
            assert [r.getMessage() for r in caplog.records if r.name.startswith("nats")] == []
        finally:
            await nc.close()
    assert not await round_trip(nc, 0.1)  # closed: no answer, no error
