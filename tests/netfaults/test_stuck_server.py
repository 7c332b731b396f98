"""A connection held by a NATS node cut off from the other two moves to one of them
(services/common/http/nats_failover.py), on three nodes that are separate hosts.

The node keeps its clients (their TCP connections and PINGs are fine), so nats-py alone stays on it
and every JetStream publish through it fails for as long as the partition lasts: the gateway answered
503 to every submission for the whole of the fault suite's node partition (docs/operations.md). A
watched connection, told of each failed publish as the gateway's 503 handler tells it, publishes again
within seconds, on another node, while the partition lasts.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js.api import StreamConfig

from services.common.http.nats_failover import StuckServerWatch
from services.common.nats.connection import UNAVAILABLE
from services.common.nats.server.cluster import wait_current, wait_jetstream
from tests.netfaults.conftest import require_netns
from tests.support.netns.faults import NetFaults
from tests.support.netns.nats_nodes import NsCluster
from tests.support.netns.network import TestNet

pytestmark = [pytest.mark.netfaults, pytest.mark.timeout(180)]
NODES = ["n1", "n2", "n3"]
STREAM = "S"
CUT_OFF_S = 20.0
"""How long the watched connection has to publish again: the partition lasts until then."""


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[TestNet, NsCluster]]:
    """Three clustered nodes, each a host, with an R3 stream; nothing of them left afterwards."""
    require_netns()
    net = TestNet(NODES).create()
    nodes: NsCluster | None = None
    try:
        nodes = NsCluster(net, NODES, tmp_path / "nats").start()
        await wait_jetstream(nodes.url)
        nc = await nats.connect(nodes.url.split(","), max_reconnect_attempts=-1)
        try:
            await nc.jetstream().add_stream(StreamConfig(name=STREAM, subjects=["s.>"], num_replicas=3))
            await wait_current(nc.jetstream(), [STREAM])
        finally:
            await nc.close()
        yield net, nodes
    finally:
        if nodes is not None:
            nodes.stop()
        net.teardown()


async def on_n1(nodes: NsCluster) -> NatsClient:
    """A client on n1 that knows the other two (in order: no randomizing)."""
    return await nats.connect(
        [node.url for node in nodes.nodes], dont_randomize=True, max_reconnect_attempts=-1,
        reconnect_time_wait=0.2, connect_timeout=2,
    )  # fmt: skip


async def publish(nc: NatsClient) -> bool:
    """Whether one publish to the stream was stored (a short timeout: the gateway's retry loop)."""
    try:
        await nc.jetstream(timeout=1.0).publish("s.x", b"x")
    except (*UNAVAILABLE, nats.errors.Error):
        return False
    return True


def netloc(nc: NatsClient) -> str | None:
    """The ``host:port`` of the server ``nc`` is connected to."""
    return nc.connected_url.netloc if nc.connected_url else None


async def test_a_connection_on_a_node_cut_off_from_its_cluster_moves_and_publishes_again(
    cluster: tuple[TestNet, NsCluster],
) -> None:
    net, nodes = cluster
    watched, alone = await on_n1(nodes), await on_n1(nodes)
    n1 = nodes.node("n1").url.split("//")[1]
    faults = NetFaults(net)
    try:
        assert netloc(watched) == n1
        assert await publish(watched)
        assert await publish(alone)
        watch = StuckServerWatch(watched, STREAM)
        faults.partition("n1", ["n2", "n3"])
        cut = time.monotonic()
        stored_at = None
        while time.monotonic() - cut < CUT_OFF_S:
            if await publish(watched):
                stored_at = time.monotonic() - cut
                break
            watch.failed()  # as the gateway's 503 handler does
        print(f"  watched connection stored again {stored_at} s into the partition, after {watch.moves} moves")
        assert stored_at is not None, f"no publish stored in {CUT_OFF_S:g} s of the partition"
        assert netloc(watched) not in (None, n1)
        assert watch.moves >= 1
        alone_stored = await publish(alone)  # the partition still lasts: nats-py alone is still on n1
        assert netloc(alone) == n1
        assert not alone_stored
        await watch.stop()
    finally:
        faults.heal()
        for nc in (watched, alone):
            await nc.close()
