"""2 notifier and 2 dispatcher replicas under load, one of each SIGKILLed mid-run: nothing is lost, and
every SSE stream and the webhook endpoint get each job's events in stream order.

The survivors take over: the dispatcher's fold partitions and tickets, the notifier's fan-out and
delivery queue (their leases). The killed notifier is started again so the SSE readers it served
resume with ``Last-Event-ID``; the killed dispatcher stays down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from bench.harness.fault_checks import settle
from bench.harness.fault_clients import SseReader, add_endpoint, submit
from bench.harness.fault_reads import stored_events
from bench.harness.fault_stack import FaultStack, connect_test_client
from bench.harness.receivers import Receiver, serve_fast
from bench.harness.service_processes import ServiceProcess
from bench.harness.waiting import wait_for
from services.common.nats.server.embedded import EmbeddedNats

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
JOBS = 16


@pytest.fixture
async def replicated(tmp_path: Path) -> AsyncIterator[tuple[FaultStack, ServiceProcess, ServiceProcess, NatsClient]]:
    """The fault stack plus a second dispatcher and a second notifier on one nats-server."""
    with EmbeddedNats(tmp_path / "nats") as server:
        stack = FaultStack(tmp_path / "stack", server.url, workload="short", concurrency=2)
        logs = tmp_path / "stack" / "logs"
        dispatcher2 = ServiceProcess("dispatcher", stack.dispatcher.env, logs / "dispatcher2.log")
        notifier2 = ServiceProcess("notifier", stack.notifier.env, logs / "notifier2.log")
        nc = await connect_test_client(server.url)
        try:
            await stack.start(nc)
            await asyncio.gather(dispatcher2.start(), notifier2.start())
            yield stack, dispatcher2, notifier2, nc
        finally:
            for extra in (notifier2, dispatcher2):
                extra.stop()
            stack.stop()
            await nc.close()


def _first_arrivals(receiver: Receiver, path: str) -> dict[str, list[str]]:
    """Each job's webhook ids in the order they first reached the endpoint."""
    seen: set[str] = set()
    by_job: dict[str, list[str]] = {}
    for captured in receiver.accepted_on(path):
        if captured.webhook_id not in seen:
            seen.add(captured.webhook_id)
            by_job.setdefault(json.loads(captured.body).get("job_id", ""), []).append(captured.webhook_id)
    return by_job


async def test_one_notifier_and_one_dispatcher_killed_under_load_lose_nothing_and_keep_order(
    replicated: tuple[FaultStack, ServiceProcess, ServiceProcess, NatsClient],
) -> None:
    fault, _, notifier2, nc = replicated
    key = await fault.tenant(nc)
    receiver = Receiver()
    server, base = await serve_fast(receiver)
    receiver.secrets["/hook"] = await add_endpoint(fault, key, f"{base}/hook")
    job_ids: list[str] = []
    readers: list[SseReader] = []
    for i in range(JOBS):
        job_ids.append(await submit(fault, key))
        notifier = fault.notifier if i % 2 else notifier2
        readers.append(SseReader(notifier.url, key, job_ids[-1]))
        if i == JOBS // 2:  # mid-load: jobs running, events flowing, deliveries under way
            await wait_for(lambda: any(fault.running(j) for j in job_ids), 30, "a job running")
            fault.dispatcher.kill()
            fault.notifier.kill()
    await wait_for(lambda: len(receiver.accepted_on("/hook")) > 0, 30, "the survivors delivering")
    await fault.notifier.start()  # its SSE clients come back and resume with Last-Event-ID
    result = await settle(nc, fault.settings, job_ids, fault.pricing, {"/hook": receiver}, readers, 120)
    server.close()
    assert result.problems() == []  # SSE gap-free and in order, lifecycles whole, KV == fold(stream)
    assert result.webhooks_missing == 0
    assert result.terminal == JOBS
    stored = await stored_events(nc, fault.settings, job_ids)
    arrivals = _first_arrivals(receiver, "/hook")
    for job_id in job_ids:  # the endpoint got each job's events in stream order
        assert arrivals[job_id] == [s.event.id for s in stored[job_id]]
