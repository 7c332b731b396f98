"""A consumer's leader paused on a three-node cluster, for the pullers that must notice a new one
(:mod:`tests.dispatcher.fold.test_pinned_pull_election`, :mod:`tests.common.nats.test_long_pull_election`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
from nats.aio.client import Client as NatsClient

from bench.harness.waiting import wait_for
from services.common.nats.server.cluster import NatsCluster, wait_current
from services.common.nats.server.embedded import EmbeddedNats


async def leader_of(cluster: NatsCluster, stream: str, durable: str) -> EmbeddedNats:
    """The node leading consumer ``durable`` of ``stream`` (every replica of the stream current)."""
    nc = await nats.connect(servers=cluster.url.split(","), connect_timeout=2)
    try:
        js = nc.jetstream(timeout=10.0)
        await wait_current(js, [stream])
        info = await js.consumer_info(stream, durable)
        assert info.cluster is not None
        assert info.cluster.leader
        return cluster.node(info.cluster.leader)
    finally:
        await nc.close()


@asynccontextmanager
async def around(cluster: NatsCluster, leader: EmbeddedNats) -> AsyncIterator[tuple[NatsClient, NatsClient]]:
    """Two connections to the nodes other than ``leader`` (an admin's, a puller's): a puller's requests
    reach the leader over a route."""
    others = [node for node in cluster.nodes if node is not leader]
    admin, puller = await nats.connect(others[0].url), await nats.connect(others[1].url)
    try:
        yield admin, puller
    finally:
        await puller.close()
        await admin.close()


async def until_led_elsewhere(admin: NatsClient, stream: str, durable: str, paused: EmbeddedNats) -> None:
    """Wait until another node than ``paused`` leads the consumer."""

    async def elsewhere() -> bool:
        try:
            led = await admin.jetstream(timeout=2.0).consumer_info(stream, durable)
        except Exception:  # noqa: BLE001 - no leader yet
            return False
        return led.cluster is not None and led.cluster.leader not in (None, paused.server_name)

    await wait_for(elsewhere, 30.0, "another leader of the consumer", every_s=0.5)


async def store(admin: NatsClient, subject: str, data: bytes) -> None:
    """Publish ``data`` once the stream has a leader again (stored once: a retry is a duplicate)."""

    async def stored() -> bool:
        try:
            await admin.jetstream(timeout=2.0).publish(subject, data, headers={"Nats-Msg-Id": data.decode()})
        except Exception:  # noqa: BLE001 - the stream electing its leader
            return False
        return True

    await wait_for(stored, 30.0, "a message stored", every_s=0.5)
