"""A pinned pull whose request went to a consumer leader that was paused: once another node leads the
consumer, the request is replaced at once (:class:`~services.dispatcher.fold.pinned_pull.PinnedPull`),
on three real nodes.

The new leader tells the waiting requests it heard of (409 Leadership Change); one sent while the leader
was paused never reached the others, and a leader that steps down drops its requests silently. Before,
nothing came for the request's whole life (here 30 s; ``-m netfaults`` saw partitions recover in 31 and
37 s that way).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from bench.harness.waiting import wait_for
from services.common.nats.cluster import wait_current
from services.dispatcher.fold.pinned_pull import PinnedConsumer, PinnedPull
from tests.support.stopping import pausable_cluster, sigstop

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]
REQUEST_S = 30.0
"""The open request's life: the batch waits this long for its first message."""


async def test_a_request_left_with_a_paused_leader_is_replaced_once_another_leads(tmp_path: Path) -> None:
    consumer = PinnedConsumer("FOLDS", "fold-0", "folds.>", ack_wait_s=5.0, max_deliver=5, max_ack_pending=10,
                              pin_timeout_s=4.0)  # fmt: skip
    async with pausable_cluster(tmp_path / "cluster") as cluster:
        admin = await nats.connect(servers=cluster.url.split(","), connect_timeout=2)
        js = admin.jetstream(timeout=10.0)
        await js.add_stream(StreamConfig(name="FOLDS", subjects=["folds.>"], num_replicas=3))
        await consumer.ensure(admin)
        await wait_current(js, ["FOLDS"])
        info = await js.consumer_info("FOLDS", "fold-0")
        assert info.cluster is not None
        assert info.cluster.leader
        paused = cluster.node(info.cluster.leader)
        others = [node for node in cluster.nodes if node is not paused]
        await admin.close()
        # Both connections to nodes that stay up: the puller's requests reach the leader over a route.
        admin = await nats.connect(others[0].url)
        nc = await nats.connect(others[1].url)
        puller = PinnedPull(nc, consumer)
        try:
            await puller.start()
            assert paused.pid is not None
            sigstop(paused.pid)
            waiting = asyncio.create_task(puller.batch(1, REQUEST_S))
            await wait_for(lambda: puller.requesting, 5.0, "the request sent")

            async def new_leader() -> bool:
                try:
                    led = await admin.jetstream(timeout=2.0).consumer_info("FOLDS", "fold-0")
                except Exception:  # noqa: BLE001 - no leader yet
                    return False
                return led.cluster is not None and led.cluster.leader not in (None, paused.server_name)

            await wait_for(new_leader, 30.0, "another leader of the consumer", every_s=0.5)
            await wait_for(lambda: _stored(admin), 30.0, "a message stored", every_s=0.5)
            got = await waiting
            assert [msg.data for msg in got] == [b"after"]
            assert puller.elections >= 1
        finally:
            await puller.close()
            await nc.close()
            await admin.close()


async def _stored(nc: nats.NATS) -> bool:
    try:
        await nc.jetstream(timeout=2.0).publish("folds.a", b"after", headers={"Nats-Msg-Id": "after"})
    except Exception:  # noqa: BLE001 - the stream electing its leader
        return False
    return True
