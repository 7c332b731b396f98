"""An SSE connection whose notifier is on a node that stopped serving reads on through another node.

A node cut off from its cluster (here SIGSTOPped, which keeps its clients' TCP connections, as a
partition does) leaves nats-py where it is: its PINGs are minutes apart. The notifier's shared SSE feed
then misses its pull's heartbeats and cannot make its consumer again, and tells the notifier's
:class:`~services.common.http.nats_failover.StuckServerWatch`, which moves the connection to a node that
serves JetStream; the feed makes its consumer there after the last event it read. Without the watch the
tap would wait for as long as the node stays stopped.
"""

from __future__ import annotations

import asyncio
import os
import signal

import nats
import pytest

from contracts.events.registry import EventType
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.common.http.nats_failover import StuckServerWatch
from services.common.nats.server.cluster import NatsCluster
from services.notifier.sse.hub import Hub, job_key
from services.notifier.sse.tap import Tap
from tests.support.events import job_event, publish
from tests.support.stopping import jobs_leader, sigstop

pytestmark = [pytest.mark.serial, pytest.mark.faults, pytest.mark.timeout(180)]
READ_ON_WITHIN_S = 45.0
"""How long after the stop the tap must have read on (about 10 s here: two missed 1 s heartbeats, a
consumer request timing out, the watch's asks failing for 3 s)."""


async def test_a_tap_on_a_stopped_node_reads_on_through_another(cluster: NatsCluster) -> None:
    subjects = Subjects(Namespace())
    leader = await jobs_leader(cluster, subjects.ns)
    stuck, healthy = (node for node in cluster.nodes if node is not leader)
    publisher = await nats.connect(leader.url, connect_timeout=2)
    notifier = await nats.connect(
        servers=[stuck.url, healthy.url], dont_randomize=True, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
        connect_timeout=1,
    )  # fmt: skip
    assert notifier.connected_url is not None
    assert notifier.connected_url.port == stuck.port
    watch = StuckServerWatch(notifier, JOBS)
    hub = Hub(notifier, notifier.jetstream(), JOBS, "", 64, 1.0, unavailable=watch.failed)
    await hub.start()
    job, leader_js = "job_cut_off", publisher.jetstream(timeout=10.0)
    try:
        async with Tap(hub, job_key("acme", job), [subjects.job_events("acme", job)], 0, 64) as tap:
            first = await publish(leader_js, subjects, job_event("acme", job, EventType.JOB_CREATED))
            item = await tap.get(10.0)
            assert item is not None
            assert item.seq == first
            assert stuck.pid is not None
            sigstop(stuck.pid)
            try:
                stopped = asyncio.get_running_loop().time()
                kinds = (EventType.JOB_PROGRESS, EventType.JOB_LOG, EventType.JOB_SUCCEEDED)
                seqs = [await publish(leader_js, subjects, job_event("acme", job, kind)) for kind in kinds]
                got: list[int] = []
                while len(got) < len(seqs):
                    waited = asyncio.get_running_loop().time() - stopped
                    assert waited < READ_ON_WITHIN_S, f"the tap read {got} of {seqs} in {waited:.0f} s"
                    if (item := await tap.get(1.0)) is not None:
                        got.append(item.seq)
                print(f"read on {asyncio.get_running_loop().time() - stopped:.1f} s after the stop")
                assert got == seqs  # nothing skipped or read twice across the move
                assert watch.moves == 1
                assert notifier.connected_url is not None
                assert notifier.connected_url.port != stuck.port
            finally:
                os.kill(stuck.pid, signal.SIGCONT)
    finally:
        await hub.stop()
        await watch.stop()
        for nc in (notifier, publisher):
            await nc.close()
