"""A dispatcher whose start fails exits (non-zero) instead of hanging on its worker pool.

Found by the network-fault suite: on a busy 3-node cluster a JetStream request of the fold's start
timed out (5 s), ``Dispatcher.start`` raised after the local pool had spawned its workers, and
``serve`` never stopped the dispatcher: the process sat in ``waitpid`` for the pool's (non-daemon)
workers for ever, so nothing could restart it. Here the failure is made certain: a consumer on
``JOBS_FOLD`` that overlaps partition 0's, so the fold's consumer cannot be created.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from bench.harness.fault_stack import ROUTES, connect_test_client
from bench.harness.service_processes import ServiceProcess, service_env
from services.common.config import BaseServiceSettings
from services.common.nats.connection import declare_all
from services.common.nats.embedded import EmbeddedNats
from services.dispatcher.fold.partitions import declare_fold_stream, partition_subject

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
EXIT_WITHIN_S = 60.0
"""Far more than a stop takes (the pool's workers end at once): past it, the process hangs."""


async def test_a_dispatcher_whose_start_fails_exits(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "nats") as server:
        settings = BaseServiceSettings(profile="test", nats_url=server.url)
        nc = await connect_test_client(server.url)
        try:
            js = nc.jetstream()
            await declare_all(js, settings)
            stream = await declare_fold_stream(js, settings.ns, 8)
            blocker = ConsumerConfig(durable_name="blocker", filter_subject=partition_subject(settings.ns, 0),
                                     ack_policy=AckPolicy.EXPLICIT)  # fmt: skip
            await js.add_consumer(stream, blocker)  # a work queue takes one consumer per subject
        finally:
            await nc.close()
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES.format(workload="short", concurrency=2, sessions=1, price=1.0))
        env = service_env(server.url, tmp_path / "data", routes, local_pool_size=2, log_level="ERROR")
        dispatcher = ServiceProcess("dispatcher", env, tmp_path / "dispatcher.log")
        dispatcher.launch()
        assert dispatcher.process is not None
        try:
            code = dispatcher.process.wait(EXIT_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the dispatcher hangs after its start failed: {dispatcher.log.read_text()[-2000:]}")
        finally:
            dispatcher.stop()
        assert code != 0
        assert "PinnedPullError" in dispatcher.log.read_text()
