"""A connection whose server stops serving JetStream moves to another server once its asks have failed
for STUCK_AFTER_S (services/common/http/nats_failover.py), on real servers: one SIGSTOPped keeps its
clients' TCP connections, as a node cut off from its cluster does, and nats-py alone stays on it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import ClusterInfo, PeerInfo, StreamConfig, StreamInfo, StreamState

from services.common.http.nats_failover import PROBE_EVERY_S, STUCK_AFTER_S, StuckServerWatch, without_quorum
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.stopping import sigstop

pytestmark = pytest.mark.timeout(90)
STREAM = "S"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[EmbeddedNats, EmbeddedNats]]:
    """Two separate nats-servers with JetStream (continued before they stop, if stopped)."""
    first = EmbeddedNats(tmp_path / "a", sync_interval="2m").start()
    second = EmbeddedNats(tmp_path / "b", sync_interval="2m").start()
    try:
        yield first, second
    finally:
        for server in (first, second):
            if server.pid is not None:
                os.kill(server.pid, signal.SIGCONT)
            server.stop()


async def client(*urls: str) -> NatsClient:
    """A client on the first of ``urls`` (in order, no randomizing), reconnecting forever."""
    return await nats.connect(
        servers=list(urls), dont_randomize=True, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
        connect_timeout=1,
    )  # fmt: skip


@pytest.fixture
async def on_first(servers: tuple[EmbeddedNats, EmbeddedNats]) -> AsyncIterator[tuple[NatsClient, NatsClient]]:
    """A watched client and one left alone, both on the first server, which holds stream S."""
    first, second = servers
    watched, alone = await client(first.url, second.url), await client(first.url, second.url)
    await watched.jetstream().add_stream(name=STREAM, subjects=["s.>"])
    try:
        yield watched, alone
    finally:
        for nc in (watched, alone):
            await nc.close()


def port_of(nc: NatsClient) -> int | None:
    return nc.connected_url.port if nc.connected_url else None


async def test_a_server_that_answers_keeps_the_connection_and_one_that_stops_is_left(
    servers: tuple[EmbeddedNats, EmbeddedNats], on_first: tuple[NatsClient, NatsClient]
) -> None:
    first, second = servers
    watched, alone = on_first
    watch = StuckServerWatch(watched, STREAM)
    asks_until = time.monotonic() + STUCK_AFTER_S + 1
    while time.monotonic() < asks_until:  # failed requests, but the server answers every ask
        watch.failed()
        await asyncio.sleep(PROBE_EVERY_S / 2)
    assert watch.moves == 0
    assert port_of(watched) == first.port

    assert first.pid is not None
    sigstop(first.pid)
    stopped = time.monotonic()
    while port_of(watched) != second.port or not watched.is_connected:
        assert time.monotonic() - stopped < 20, "the watched connection never left the stopped server"
        watch.failed()
        await asyncio.sleep(0.2)
    moved_after = time.monotonic() - stopped
    assert watch.moves == 1
    assert moved_after >= STUCK_AFTER_S  # not on the first failed ask
    assert port_of(alone) == first.port  # nats-py alone stays on the stopped server (its PINGs are minutes apart)
    await watched.jetstream().add_stream(name="T", subjects=["t.>"])  # the new server serves JetStream

    for _ in range(3):  # the new server answers (stream S is not there: an answer all the same)
        watch.failed()
        await asyncio.sleep(PROBE_EVERY_S + 0.1)
    assert watch.moves == 1
    await watch.stop()


async def test_one_failure_told_is_enough_to_leave_a_stopped_server(
    servers: tuple[EmbeddedNats, EmbeddedNats], on_first: tuple[NatsClient, NatsClient]
) -> None:
    """A service whose failures come seconds apart (an SSE feed that missed its pull's heartbeats) tells
    the watch once: it asks on its own, one ask a PROBE_EVERY_S, until it moves."""
    first, second = servers
    watched, _ = on_first
    watch = StuckServerWatch(watched, STREAM)
    assert first.pid is not None
    sigstop(first.pid)
    stopped = time.monotonic()
    watch.failed()
    while port_of(watched) != second.port or not watched.is_connected:
        assert time.monotonic() - stopped < 20, "one failure told did not move the connection"
        await asyncio.sleep(0.2)
    assert watch.moves == 1
    assert time.monotonic() - stopped >= STUCK_AFTER_S
    await watch.stop()


async def test_with_no_other_server_known_nothing_is_asked(servers: tuple[EmbeddedNats, EmbeddedNats]) -> None:
    first, _ = servers
    nc = await client(first.url)
    try:
        watch = StuckServerWatch(nc, STREAM)
        sent = nc.stats["out_msgs"]
        for _ in range(3):
            watch.failed()
            await asyncio.sleep(PROBE_EVERY_S + 0.1)
        assert nc.stats["out_msgs"] == sent
    finally:
        await nc.close()


def stream_info(leader: str | None, *replicas: tuple[bool, float]) -> StreamInfo:
    """A stream's info as its leader answers it: each replica ``(current, seconds since it was heard)``."""
    peers = [
        PeerInfo(name=f"n{i}", current=current, active=int(ago * 1e9)) for i, (current, ago) in enumerate(replicas)
    ]
    return StreamInfo(config=StreamConfig(name=STREAM), state=StreamState(messages=0, bytes=0, first_seq=0,
                      last_seq=0, consumer_count=0), cluster=ClusterInfo(leader=leader, replicas=peers))  # fmt: skip


@pytest.mark.parametrize(
    ("info", "lost"),
    [
        (stream_info("n0", (True, 0.4), (True, 1.1)), False),
        (stream_info("n0", (True, 0.4), (True, 9.0)), False),  # one replica away: the quorum holds
        (stream_info("n0", (True, 5.0), (True, 9.0)), True),  # cut off: nats-server still says "current"
        (stream_info("n0", (False, 0.1), (False, 0.1)), True),
        (stream_info(None, (True, 0.1), (True, 0.1)), True),  # no leader (an election)
        (StreamInfo(config=StreamConfig(name=STREAM), state=StreamState(0, 0, 0, 0, 0)), False),  # one server
    ],
    ids=["healthy", "one-away", "cut-off", "not-current", "no-leader", "single-server"],
)
def test_an_answer_without_a_quorum_is_a_failed_ask(info: StreamInfo, lost: bool) -> None:
    assert without_quorum(info) is lost
