"""A service's look at its declared streams while JetStream answers late: asked again, not a failed start.

A fresh clone's CI run had a gateway on a loaded 3-node cluster exit during start-up: a service connected
as its role's user only checks that its streams are there (``check_declarations``), and one look went
unanswered within the JetStream context's time-out. Here the server is stopped (SIGSTOP) while the check
runs, with a short time-out, and goes on a moment later."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import nats
import pytest

from contracts.streams import declarations
from contracts.subjects import Namespace
from services.common.nats.declarations import NotDeclaredError, apply_declarations, check_declarations
from services.common.nats.server.embedded import EmbeddedNats

PAUSE_S = 1.5
"""How long the server answers nothing: three of the context's time-outs."""


async def test_a_check_while_jetstream_answers_late_asks_again_and_finds_every_stream(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats").start()
    assert server.pid is not None
    nc = await nats.connect(server.url)
    try:
        await apply_declarations(nc.jetstream(timeout=10), declarations(Namespace("late")))
        names = [stream.config.name for stream in await nc.jetstream().streams_info()]
        js = nc.jetstream(timeout=0.5)
        os.kill(server.pid, signal.SIGSTOP)
        resumed = asyncio.get_running_loop().call_later(PAUSE_S, os.kill, server.pid, signal.SIGCONT)
        try:
            report = await check_declarations(js, names)
        finally:
            resumed.cancel()
            os.kill(server.pid, signal.SIGCONT)
        assert sorted(report.unchanged) == sorted(names) != []
        with pytest.raises(NotDeclaredError, match="NOT_THERE"):  # a missing stream is still named, not retried
            await check_declarations(js, [names[0], "NOT_THERE"])
    finally:
        await nc.close()
        server.stop()
