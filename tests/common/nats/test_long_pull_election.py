"""A long pull whose request went to a consumer leader that was paused: once another node leads the
consumer, the request is replaced at once (:class:`~services.common.nats.long_pull.LongPull`, the
dispatch tickets' and the webhook fan-out's puller), on three real nodes.

The new leader tells the waiting requests it heard of (409 Leadership Change); one sent while the leader
was paused never reached the others, and a leader that steps down drops its requests silently. Before,
the puller waited out the request's life (30 s, and 5 s for its status) for the next message.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from bench.harness.waiting import wait_for
from services.common.nats.long_pull import LongPull
from tests.support.consumer_leaders import around, leader_of, store, until_led_elsewhere
from tests.support.stopping import pausable_cluster, sigstop

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]
REQUEST_S = 60.0
"""The request's life: the message must come within it (long, so a loaded machine elects in time)."""


async def test_a_request_left_with_a_paused_leader_is_replaced_once_another_leads(tmp_path: Path) -> None:
    async with pausable_cluster(tmp_path / "cluster") as cluster:
        nc = await nats.connect(servers=cluster.url.split(","), connect_timeout=2)
        js = nc.jetstream(timeout=10.0)
        await js.add_stream(StreamConfig(name="TICKETS", subjects=["tickets.>"], num_replicas=3))
        await js.add_consumer("TICKETS", ConsumerConfig(durable_name="take", ack_policy=AckPolicy.EXPLICIT))
        await nc.close()
        paused = await leader_of(cluster, "TICKETS", "take")
        async with around(cluster, paused) as (admin, pulling):
            puller = LongPull(pulling, "TICKETS", "take", expires_s=REQUEST_S)
            try:
                assert paused.pid is not None
                sigstop(paused.pid)
                taking = asyncio.create_task(puller.next())
                await wait_for(lambda: puller.inbox.pulls == 1, 5.0, "the request sent")
                lost_at = asyncio.get_running_loop().time() + REQUEST_S
                await until_led_elsewhere(admin, "TICKETS", "take", paused)
                await store(admin, "tickets.a", b"after")
                async with asyncio.timeout_at(lost_at):  # before the lost request's life ran out
                    got = await taking
                assert got.data == b"after"
                assert puller.elections >= 1
            finally:
                await puller.close()
