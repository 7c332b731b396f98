"""A local worker's event reaches JetStream through another node when the worker's node stops serving.

The worker publishes its events straight to JetStream (:class:`~modal_workers.runtime.sinks.NatsSink`),
each retried for 20 s while NATS is away. A node cut off from its cluster (here SIGSTOPped, which keeps
the worker's TCP connection, as a partition does; the worker's PINGs are two minutes apart) would take
every retry until they run out, and the attempt would end without its event. Each failed try now tells
the sink's stuck-server watch, which moves the connection to a node that serves JetStream.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import nats
import pytest

from contracts.events.registry import EventType
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from modal_workers.runtime.sinks import NatsSink
from services.common.nats.publish import RETRY_FOR_S
from tests.support.events import job_event
from tests.support.nats import role_options, server_with_users
from tests.support.stopping import jobs_leader, pausable_cluster, sigstop

pytestmark = [pytest.mark.serial, pytest.mark.faults, pytest.mark.timeout(120)]


async def test_an_event_sent_while_the_workers_node_is_stopped_is_stored_through_another(tmp_path: Path) -> None:
    subjects = Subjects(Namespace())
    async with pausable_cluster(tmp_path / "cluster") as cluster:
        leader = await jobs_leader(cluster, subjects.ns)
        stuck = next(node for node in cluster.nodes if node is not leader)
        operator = await nats.connect(leader.url, connect_timeout=2)  # reads on
        try:
            js = operator.jetstream(timeout=10.0)
            sink = await NatsSink.connect(stuck.url)
            try:
                assert sink.watch is not None
                assert sink._nc.connected_url.port == stuck.port
                assert len(sink._nc.servers) > 1  # the cluster's other nodes, learnt from the server
                assert stuck.pid is not None
                sigstop(stuck.pid)
                try:
                    event = job_event("acme", "job_sink_moves", EventType.JOB_LOG)
                    began = asyncio.get_running_loop().time()
                    await sink.send("log", event)  # raises once RETRY_FOR_S of tries went nowhere
                    took = asyncio.get_running_loop().time() - began
                    print(f"stored {took:.1f} s after it was sent (tries for {RETRY_FOR_S:g} s at most)")
                    stored = await js.get_last_msg(JOBS, subjects.stored_job_event("acme", "job_sink_moves", "log"))
                    assert stored.headers is not None
                    assert stored.headers["Nats-Msg-Id"] == event.id
                    assert sink.watch.moves == 1
                    assert sink._nc.connected_url.port != stuck.port
                finally:
                    os.kill(stuck.pid, signal.SIGCONT)
            finally:
                await sink.close()
        finally:
            await operator.close()


async def test_the_sinks_watch_asks_what_the_workers_user_may_read(tmp_path: Path) -> None:
    """With NATS users a worker connects as the worker role, which may not read JOBS' info: its watch
    asks about FRAMES, or each of its asks would go unanswered and move a healthy connection."""
    async with server_with_users(tmp_path / "nats") as server:
        sink = await NatsSink.connect(server.url, **role_options("worker"))
        try:
            assert sink.watch is not None
            assert await sink.watch.answers()
        finally:
            await sink.close()
