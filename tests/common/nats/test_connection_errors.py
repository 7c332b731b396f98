"""What a service's NATS connection logs on its own while its server is away: one warning line per
error, not nats-py's default ("nats: encountered error" at ERROR, with a traceback, for every failed
reconnect: some 170 of a netfaults run's 226 tracebacks)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bench.harness.waiting import wait_for
from services.common.config import BaseServiceSettings
from services.common.nats import connection
from services.common.nats.connection import connect
from services.common.nats.embedded import EmbeddedNats


async def test_a_server_gone_is_told_in_warnings_without_tracebacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    server = EmbeddedNats(tmp_path / "nats").start()
    nc = await connect(BaseServiceSettings(nats_url=server.url), "errors-test")
    try:
        server.stop()

        def reported() -> list[logging.LogRecord]:
            ours = [r for r in caplog.records if r.name == connection.__name__ and r.getMessage().startswith("NATS: ")]
            return ours if len(ours) >= 2 else []  # the lost connection, then a reconnect refused

        told = await wait_for(reported, timeout_s=15, what="the connection's errors reported")
    finally:
        await nc.close()
        server.stop()
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in told)
    assert [r.getMessage() for r in caplog.records if r.name == "nats.aio.client"] == []
