"""What a service's NATS connection logs on its own while its server is away: one warning line per
error, not nats-py's default ("nats: encountered error" at ERROR, with a traceback, for every failed
reconnect: some 170 of a netfaults run's 226 tracebacks), a service's connection and a worker's alike.
A worker's sink closed while it reconnects is closed (its drain raised). Both leave a server that went
silent with its socket open after two unanswered pings."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest

from bench.harness.waiting import wait_for
from modal_workers.runtime.sinks import NatsSink
from services.common.config import BaseServiceSettings
from services.common.nats import connection
from services.common.nats.connection import connect, log_failure
from services.common.nats.server.embedded import EmbeddedNats


async def service_connection(url: str) -> Closable:
    """A service's connection (every service connects so)."""
    return await connect(BaseServiceSettings(nats_url=url), "errors-test")


async def worker_connection(url: str) -> Closable:
    """A worker's event sink (a local pool's or a Modal worker's connection)."""
    return await NatsSink.connect(url)


class Closable(Protocol):
    async def close(self) -> None: ...


@pytest.mark.parametrize("connection_of", [service_connection, worker_connection])
async def test_a_server_gone_is_told_in_warnings_without_tracebacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, connection_of: Callable[[str], Awaitable[Closable]]
) -> None:
    caplog.set_level(logging.WARNING)
    server = EmbeddedNats(tmp_path / "nats").start()
    nc = await connection_of(server.url)
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


@pytest.mark.parametrize("connection_of", [service_connection, worker_connection])
async def test_a_silent_server_is_left_after_two_unanswered_pings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection_of: Callable[[str], Awaitable[Closable]]
) -> None:
    """A stopped (SIGSTOP) nats-server keeps its sockets open and answers nothing, as a host cut off
    without a reset does: the client calls the connection stale after two pings, not after nats-py's
    default of two 2-minute ones (the worker's sink set none before)."""
    monkeypatch.setattr(connection, "PING_INTERVAL_S", 0.5)
    server = EmbeddedNats(tmp_path / "nats").start()
    opened = await connection_of(server.url)
    client: Any = opened._nc if isinstance(opened, NatsSink) else opened
    assert server.pid is not None
    assert client.is_connected
    os.kill(server.pid, signal.SIGSTOP)
    try:
        await wait_for(lambda: not client.is_connected, timeout_s=15, what="the silent server's connection left")
    finally:
        os.kill(server.pid, signal.SIGCONT)
        await opened.close()
        server.stop()


def test_a_failure_raised_from_nats_away_is_a_warning_and_any_other_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """:func:`~services.common.nats.connection.log_failure`: what NATS being away raised, directly or as
    the cause of another error (a fold batch whose time ran out on it), is a warning without a traceback."""
    caplog.set_level(logging.WARNING)
    logger = logging.getLogger("tests.log_failure")
    try:
        try:
            raise TimeoutError("nats: timeout")
        except TimeoutError as away:
            raise RuntimeError("a batch ran out of time") from away
    except RuntimeError as exc:
        log_failure(logger, exc, "batch %d given back", 1)
    log_failure(logger, RuntimeError("a bug"), "batch %d given back", 2)
    first, second = [r for r in caplog.records if r.name == logger.name]
    assert (first.levelno, first.exc_info) == (logging.WARNING, None)
    assert first.getMessage() == "batch 1 given back (NATS away: RuntimeError('a batch ran out of time'))"
    assert second.levelno == logging.ERROR
    assert second.exc_info is not None


async def test_a_connection_closed_on_purpose_is_not_told_as_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """nats-py calls ``disconnected_cb`` on ``close()`` too: every service's stop, and ``gpurelay dev``'s
    start (its setup connection), printed "NATS connection lost; reconnecting". A server gone still does."""
    caplog.set_level(logging.DEBUG, logger=connection.__name__)
    server = EmbeddedNats(tmp_path / "nats").start()

    def said(message: str) -> list[int]:
        return [r.levelno for r in caplog.records if r.name == connection.__name__ and r.getMessage() == message]

    try:
        closed = await connect(BaseServiceSettings(nats_url=server.url), "closed-test")
        await closed.close()
        assert said("NATS connection lost; reconnecting") == []
        assert said("NATS connection closed") == [logging.DEBUG]
        lost = await connect(BaseServiceSettings(nats_url=server.url), "lost-test")
        server.stop()
        await wait_for(lambda: said("NATS connection lost; reconnecting"), timeout_s=15, what="the loss told")
        await lost.close()
    finally:
        server.stop()
    assert said("NATS connection lost; reconnecting") == [logging.WARNING]
