"""A 3-node NATS cluster on loopback, streams and KV at 3 replicas: one node SIGKILLed mid-job, another
mid-delivery; jobs complete, no event is lost, no delivery is missing.

Three nats-server processes from the wheel, clustered with routes as ``deploy/nats/cluster/``;
the services get every node's URL and ``GPURELAY_NATS_REPLICAS=3``, and connect as their roles' users,
as the committed cluster has them (the test as the operator). The first node killed leads
the JOBS stream while two jobs are held mid-run; it comes back and catches up before the second
is killed: the leader of the webhook delivery queues, while deliveries wait for their retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from bench.harness.fault_checks import settle
from bench.harness.fault_clients import SseReader, add_endpoint, submit
from bench.harness.fault_stack import FaultStack, connect_test_client, operator_options
from bench.harness.receivers import Captured, Receiver, serve_fast
from bench.harness.waiting import wait_for
from contracts.streams import JOBS, WEBHOOK_DELIVERIES, declarations
from contracts.subjects import Namespace
from services.common.nats.server.auth import render_authorization
from services.common.nats.server.cluster import NatsCluster, wait_current, wait_jetstream
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.nats_deploy import role_passwords

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
HELD_JOBS, LATER_JOBS, STEPS_WHILE_DOWN = 2, 2, 5


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    """Three clustered nats-server nodes with JetStream, each on its own store, a user per role."""
    users = render_authorization(Namespace(), declarations(Namespace()), role_passwords())
    nodes = NatsCluster(tmp_path / "cluster", authorization=users).start()
    try:
        await wait_jetstream(nodes.url, 30, **operator_options(role_passwords()))
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
async def stack(tmp_path: Path, cluster: NatsCluster) -> AsyncIterator[tuple[FaultStack, NatsClient]]:
    """The three services as processes on the cluster, every stream and bucket at 3 replicas."""
    users = role_passwords()
    stack = FaultStack(tmp_path / "stack", cluster.url, workload="held", concurrency=2, users=users, nats_replicas=3)
    nc = await connect_test_client(cluster.url, users)
    try:
        await stack.start(nc)
        yield stack, nc
    finally:
        stack.stop()
        await nc.close()


async def _leader(js: JetStreamContext, cluster: NatsCluster, stream: str) -> EmbeddedNats:
    info = await js.stream_info(stream)
    assert info.cluster is not None
    assert info.cluster.leader is not None
    assert len(info.cluster.replicas or []) == 2  # three copies: the leader's and two
    return cluster.node(info.cluster.leader)


async def test_a_node_killed_mid_job_and_another_mid_delivery_lose_nothing(
    stack: tuple[FaultStack, NatsClient], cluster: NatsCluster
) -> None:
    fault, nc = stack
    js = nc.jetstream(timeout=10.0)
    ns = fault.settings.ns
    key = await fault.tenant(nc)
    failing, refused = [True], set[str]()

    def decide(captured: Captured) -> int | None:  # while failing: the first attempt of each is refused
        if failing[0] and captured.webhook_id not in refused:
            refused.add(captured.webhook_id)
            return 503
        return None

    receiver = Receiver()
    server, base = await serve_fast(receiver)
    receiver.secrets["/hook"] = await add_endpoint(fault, key, f"{base}/hook")
    job_ids = [await submit(fault, key) for _ in range(HELD_JOBS)]
    readers = [SseReader(fault.notifier.url, key, job_id) for job_id in job_ids]
    await wait_for(lambda: all(fault.running(j) for j in job_ids), 30, "every job running")

    first = await _leader(js, cluster, ns.stream(JOBS))
    first.kill()  # mid-job: the JOBS leader
    steps = {job_id: fault.step(job_id) for job_id in job_ids}
    logged = lambda: all(fault.step(j) >= steps[j] + STEPS_WHILE_DOWN for j in job_ids)  # noqa: E731
    await wait_for(logged, 30, "steps logged with a node down")
    fault.release()
    held = await settle(nc, fault.settings, job_ids, fault.pricing, {"/hook": receiver}, readers, 90)
    assert held.problems() == [], fault.notifier.log_excerpt(60)
    first.start()
    streams = [info.config.name or "" for info in await js.streams_info()]
    await wait_current(js, streams, 60)

    receiver.decide, failing[0] = decide, True
    later = [await submit(fault, key) for _ in range(LATER_JOBS)]
    later_readers = [SseReader(fault.notifier.url, key, job_id) for job_id in later]
    await wait_for(lambda: len(refused) >= 2 * LATER_JOBS, 30, "deliveries waiting for their retries")
    second = await _leader(js, cluster, ns.stream(WEBHOOK_DELIVERIES))
    second.kill()  # mid-delivery: the delivery queues' leader
    failing[0] = False
    result = await settle(
        nc, fault.settings, job_ids + later, fault.pricing, {"/hook": receiver}, readers + later_readers, 120
    )
    second.start()
    print(result, "refused", len(refused), "nodes killed", first.server_name, second.server_name)
    assert result.problems() == [], fault.notifier.log_excerpt(60)
    assert result.webhooks_missing == 0
    assert result.jobs == HELD_JOBS + LATER_JOBS
    server.close()
