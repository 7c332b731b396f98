"""A publish sent again while its first try is still being replicated is not an error.

On a replicated stream a publish whose ack timed out may still be in Raft (proposed, not yet
committed): the next try with the same ``Nats-Msg-Id`` is then answered 409 "duplicate message id
is in process" (err_code 10158) rather than stored or acked as a duplicate. That answer says the
first try may yet be stored: ``until_stored`` asks again, as while NATS is away. Found by the
network-fault suite (a dispatcher's ``job.failed`` and the notifier's fan-out failed on it).
Here the two followers of an R3 stream are paused so that the leader cannot commit, then resumed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from services.common.nats.publish import MSG_ID, until_stored
from services.common.nats.server.cluster import NatsCluster, wait_current, wait_jetstream
from tests.support.stopping import sigstop

pytestmark = [pytest.mark.faults, pytest.mark.timeout(90)]
PAUSE_S = 3.0
"""Several of the publish's timeouts: the tries after the first find it in process."""


async def test_a_publish_retried_while_its_first_try_replicates_is_stored_once(tmp_path: Path) -> None:
    with NatsCluster(tmp_path / "cluster") as cluster:
        await wait_jetstream(cluster.url, 30)
        nc = await nats.connect(cluster.url.split(","), max_reconnect_attempts=-1)
        try:
            js = nc.jetstream(timeout=0.5)
            await nc.jetstream(timeout=10).add_stream(StreamConfig(name="R3", subjects=["r3.>"], num_replicas=3))
            await wait_current(nc.jetstream(timeout=5), ["R3"], 30)
            leader = (await js.stream_info("R3")).cluster
            assert leader is not None
            followers = [n for n in cluster.nodes if n.server_name != leader.leader]
            for node in followers:
                sigstop(node.pid or 0)
            try:
                publishing = asyncio.create_task(
                    until_stored(lambda: js.publish("r3.a", b"once", headers={MSG_ID: "m1"}), "r3.a")
                )
                await asyncio.sleep(PAUSE_S)  # the fault's length: the leader cannot commit meanwhile
                assert not publishing.done(), publishing
            finally:
                for node in followers:
                    os.kill(node.pid or 0, signal.SIGCONT)
            ack = await asyncio.wait_for(publishing, 60)
            assert ack.seq == 1
            assert (await nc.jetstream(timeout=10).stream_info("R3")).state.messages == 1
        finally:
            await nc.close()
