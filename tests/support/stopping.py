"""SIGSTOP that has taken hold before the test goes on.

``kill(pid, SIGSTOP)`` returns once the signal is queued. The kernel wakes one thread of the target to
take it, and only that thread stops the others; on a loaded machine it may not run for a while, and
meanwhile the process's other threads go on serving (a CI run's paused nats-server stored a stop that
the test sent after the kill). :func:`sigstop` waits until every thread is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.streams import JOBS, declarations
from contracts.subjects import Namespace
from services.common.nats.connection import is_unavailable
from services.common.nats.declarations import apply_declarations
from services.common.nats.server.cluster import NatsCluster, wait_current, wait_jetstream
from services.common.nats.server.embedded import EmbeddedNats

STOP_TAKES_HOLD_S = 10.0
T = TypeVar("T")


def thread_states(pid: int) -> list[str]:
    """The state letter of each of ``pid``'s threads (``T`` stopped); ``[]``: no such process."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):  # a thread that just ended
            continue
    return states


def stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (``T``, or ``t`` under a tracer)."""
    states = thread_states(pid)
    return bool(states) and all(state in "Tt" for state in states)


def sigstop(pid: int, timeout_s: float = STOP_TAKES_HOLD_S) -> None:
    """SIGSTOP ``pid`` and return once all its threads are stopped (AssertionError past ``timeout_s``).

    It blocks: the wait is for another process, typically a few milliseconds, and a caller that let
    its own loop run meanwhile would be testing a process still half awake."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout_s
    while not stopped(pid):
        assert time.monotonic() < deadline, f"{pid} not stopped within {timeout_s:g} s: {thread_states(pid)}"
        time.sleep(0.002)


@contextlib.asynccontextmanager
async def pausable_cluster(root: Path) -> AsyncIterator[NatsCluster]:
    """Three clustered nodes, each syncing every write (as gpurelay runs them), JetStream up; a node a
    test left stopped is continued before they stop."""
    nodes = NatsCluster(root).start()
    try:
        await wait_jetstream(nodes.url, 30)
        yield nodes
    finally:
        for node in nodes.nodes:
            if node.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.pid, signal.SIGCONT)
        nodes.stop()


async def jobs_leader(cluster: NatsCluster, ns: Namespace) -> EmbeddedNats:
    """Declare JOBS of ``ns`` on ``cluster`` at 3 replicas, every replica current; the node that leads it."""
    nc = await nats.connect(servers=cluster.url.split(","), connect_timeout=2)
    try:
        js = nc.jetstream(timeout=10.0)
        decls = declarations(ns, replicas=3)
        await apply_declarations(js, decls.model_copy(update={"streams": (decls.stream(JOBS, ns),), "buckets": ()}))
        await wait_current(js, [ns.stream(JOBS)])
        info = await js.stream_info(ns.stream(JOBS))
        assert info.cluster is not None
        assert info.cluster.leader
        return cluster.node(info.cluster.leader)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def on_bucket_leader(cluster: NatsCluster, bucket: str) -> AsyncIterator[tuple[NatsClient, EmbeddedNats]]:
    """A client of the leader of a new 3-replica ``bucket``, and that leader."""
    nc = await nats.connect(cluster.nodes[0].url)
    try:
        await nc.jetstream().create_key_value(KeyValueConfig(bucket=bucket, replicas=3))
        info = await nc.jetstream().stream_info(f"KV_{bucket}")
        assert info.cluster is not None
        leader = cluster.node(info.cluster.leader or "")
    finally:
        await nc.close()
    nc = await nats.connect(leader.url)
    try:
        yield nc, leader
    finally:
        await nc.close()


@contextlib.contextmanager
def quorum_lost(cluster: NatsCluster, leader: EmbeddedNats) -> Iterator[None]:
    """The leader's followers paused (SIGSTOP) while inside, continued after."""
    followers = [node for node in cluster.nodes if node is not leader]
    for node in followers:
        assert node.pid is not None
        sigstop(node.pid)
    try:
        yield
    finally:
        for node in followers:
            assert node.pid is not None
            os.kill(node.pid, signal.SIGCONT)


async def once_available(call: Callable[..., Awaitable[T]], *args: Any, within_s: float = 30.0) -> T:
    """``call(*args)`` once NATS answers it: tried again while it fails as NATS being away for a moment
    (:func:`~services.common.nats.connection.is_unavailable`: a write still in flight, a cluster
    electing a leader after its paused nodes came back), for up to ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await call(*args)
        except Exception as exc:
            if not is_unavailable(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def once_created(kv: KeyValue, key: str, within_s: float = 10.0) -> bytes:
    """The value of ``key`` once its create is applied (a write left in flight by a lost quorum, the
    followers catching up after they came back)."""

    async def entry() -> KeyValue.Entry | None:
        with contextlib.suppress(KeyNotFoundError):
            return await once_available(kv.get, key)
        return None

    found = await wait_for(entry, timeout_s=within_s, what=f"{key} created", every_s=0.1)
    return found.value or b""


@contextlib.asynccontextmanager
async def stallable_server(root: Path, request_timeout_s: float = 0.5) -> AsyncIterator[tuple[int, JetStreamContext]]:
    """A server of its own (the suite's shared one must never be stopped) under ``root``: its pid, for
    :func:`through_a_stall`, and a JetStream context whose requests time out after ``request_timeout_s``,
    so that a stall is felt at once."""
    server = EmbeddedNats(root).start()
    assert server.pid is not None
    nc = await nats.connect(server.url)
    try:
        yield server.pid, nc.jetstream(timeout=request_timeout_s)
    finally:
        await nc.close()
        server.stop()


async def through_a_stall(
    pid: int, call: Callable[[], Awaitable[T]], stall_s: float = 1.5, within_s: float = 30.0
) -> T:
    """``call()`` made while the server ``pid`` is stopped (SIGSTOP: a stalled host, its sockets open and
    silent) for ``stall_s``, then resumed; its answer within ``within_s``. The server is always resumed."""
    try:
        sigstop(pid)
        made = asyncio.ensure_future(call())
        await asyncio.sleep(stall_s)  # the stall itself: every request meanwhile times out
    finally:
        os.kill(pid, signal.SIGCONT)  # also when the stop did not take hold in time (it may yet)
    return await asyncio.wait_for(made, within_s)


def stalled_at_first_call(
    pid: int, stall_s: float, name: str, step: Callable[..., Awaitable[T]], stalled: list[str]
) -> Callable[..., Awaitable[T]]:
    """``step`` (a method, to patch in) whose first call stops the server ``pid`` for ``stall_s`` (SIGSTOP,
    taken hold) before it goes on, ``name`` appended to ``stalled``: a start-up step meeting a server that
    answers late. A later call (the step made again) finds the server back. The caller resumes it at the end."""

    async def after_a_stall(*args: Any) -> T:
        if name not in stalled:
            stalled.append(name)
            sigstop(pid)
            asyncio.get_running_loop().call_later(stall_s, os.kill, pid, signal.SIGCONT)
        return await step(*args)

    return after_a_stall
