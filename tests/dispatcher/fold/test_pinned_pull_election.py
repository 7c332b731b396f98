"""A pinned pull whose request went to a consumer leader that was paused: once another node leads the
consumer, the request is replaced at once (:class:`~services.dispatcher.fold.pinned.pull.PinnedPull`),
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
from services.dispatcher.fold.pinned.consumer import PinnedConsumer
from services.dispatcher.fold.pinned.pull import PinnedPull
from tests.support.consumer_leaders import around, leader_of, store, until_led_elsewhere
from tests.support.stopping import pausable_cluster, sigstop

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]
REQUEST_S = 60.0
"""The open request's life: the batch waits this long for its first message (long, so a loaded machine
elects in time)."""


async def test_a_request_left_with_a_paused_leader_is_replaced_once_another_leads(tmp_path: Path) -> None:
    consumer = PinnedConsumer("FOLDS", "fold-0", ("folds.>",), ack_wait_s=5.0, max_deliver=5, max_ack_pending=10,
                              pin_timeout_s=4.0)  # fmt: skip
    async with pausable_cluster(tmp_path / "cluster") as cluster:
        nc = await nats.connect(servers=cluster.url.split(","), connect_timeout=2)
        await nc.jetstream(timeout=10.0).add_stream(StreamConfig(name="FOLDS", subjects=["folds.>"], num_replicas=3))
        await consumer.ensure(nc, None)
        await nc.close()
        paused = await leader_of(cluster, "FOLDS", "fold-0")
        async with around(cluster, paused) as (admin, pulling):
            puller = PinnedPull(pulling, consumer)
            try:
                await puller.start()
                assert paused.pid is not None
                sigstop(paused.pid)
                waiting = asyncio.create_task(puller.batch(1, REQUEST_S))
                await wait_for(lambda: puller.requesting, 5.0, "the request sent")
                await until_led_elsewhere(admin, "FOLDS", "fold-0", paused)
                await store(admin, "folds.a", b"after")
                got = await waiting
                assert [msg.data for msg in got] == [b"after"]
                assert puller.requests.elections >= 1
            finally:
                await puller.close()
