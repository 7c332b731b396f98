"""The soak: jobs submitted steadily while the gateway, the dispatcher and the notifier are each SIGKILLed
and restarted at random points; then nothing may be missing.

:func:`run_soak` runs one :class:`SoakPlan` on a fresh nats-server (file store) and a
:class:`~bench.harness.fault_stack.FaultStack` whose ``pose`` jobs log ``steps`` steps. A job is submitted
every ``duration_s / jobs`` seconds (each with an ``Idempotency-Key``, retried while the gateway is
down) and followed by an SSE reader (resuming with ``Last-Event-ID`` while the notifier is down); a
verifying receiver takes the webhooks. The restarts are drawn from a seeded RNG, so a run can be
repeated; they never overlap. Afterwards :func:`~bench.harness.fault_checks.settle` checks every job
terminal, KV == fold(stream), every webhook delivered (duplicates counted by ``webhook-id``: deliveries
are at least once) and every SSE reader gap-free. Used by ``tests/faults/test_soak.py`` (short) and
``bench/soak.py`` (100 jobs over two minutes).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness.fault_checks import Audit, settle
from bench.harness.fault_clients import SseReader, add_endpoint, submit
from bench.harness.fault_stack import FaultStack, connect_test_client
from bench.harness.receivers import Receiver, serve_fast
from services.common.nats.server.embedded import EmbeddedNats

SETTLE_S = 120.0


@dataclass(frozen=True)
class SoakPlan:
    """How many jobs over how long, how many restarts of each service, and the RNG's seed."""

    jobs: int
    duration_s: float
    restarts: int
    seed: int = 17
    concurrency: int = 4
    steps: int = 10
    """Steps each job logs, 100 ms apart: with a job every ``duration_s / jobs`` seconds, about
    ``steps / 10 * jobs / duration_s`` run at once, so a crash finds jobs, streams and deliveries under way."""

    def schedule(self, services: list[str]) -> list[tuple[float, str]]:
        """When (seconds from the start) each service is killed and restarted, in order."""
        rng = random.Random(self.seed)
        draws = [(rng.uniform(0.1, 0.9) * self.duration_s, s) for s in services for _ in range(self.restarts)]
        return sorted(draws)


@dataclass
class SoakReport:
    """What a soak did and what the audit found."""

    plan: SoakPlan
    audit: Audit
    restarts: dict[str, int] = field(default_factory=dict)
    sse_resumptions: int = 0
    """SSE streams reopened with Last-Event-ID (the notifier was down, or a stream broke)."""
    wall_s: float = 0.0

    @property
    def total_restarts(self) -> int:
        """Every service restart."""
        return sum(self.restarts.values())


async def run_soak(root: Path, plan: SoakPlan) -> SoakReport:
    """Run ``plan`` under ``root`` (nats-server and the three services, all stopped by their pids)."""
    server = EmbeddedNats(root / "nats").start()
    stack = FaultStack(
        root / "stack", server.url, workload="short", concurrency=plan.concurrency, test_steps=plan.steps
    )
    nc = await connect_test_client(server.url)
    receiver = Receiver()
    http_server, base = await serve_fast(receiver)
    try:
        await stack.start(nc)
        key = await stack.tenant(nc)
        receiver.secrets["/hook"] = await add_endpoint(stack, key, f"{base}/hook")
        started = time.monotonic()
        submitted = asyncio.create_task(_submit_all(stack, key, plan, started))
        restarts = await _restart_all(stack, plan, started)
        job_ids, readers = await submitted
        audit = await settle(nc, stack.settings, job_ids, stack.pricing, {"/hook": receiver}, readers, SETTLE_S)
        resumed = sum(reader.connections - 1 for reader in readers)
        return SoakReport(plan, audit, restarts, resumed, time.monotonic() - started)
    finally:
        http_server.close()
        stack.stop()
        await nc.close()
        server.stop()


async def _submit_all(stack: FaultStack, key: str, plan: SoakPlan, started: float) -> tuple[list[str], list[SseReader]]:
    """Submit ``plan.jobs`` jobs, one every ``duration_s / jobs`` seconds; their ids and SSE readers."""
    readers: list[SseReader] = []

    async def one(at: float) -> str:
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))  # the schedule, not a wait for a state
        job_id = await submit(stack, key)
        readers.append(SseReader(stack.notifier.url, key, job_id))
        return job_id

    every = plan.duration_s / plan.jobs
    job_ids = await asyncio.gather(*(one(i * every) for i in range(plan.jobs)))
    return list(job_ids), readers


async def _restart_all(stack: FaultStack, plan: SoakPlan, started: float) -> dict[str, int]:
    """SIGKILL and restart the services at the plan's random points, one at a time; restarts per service."""
    services = {service.service: service for service in stack.services}
    done = dict.fromkeys(services, 0)
    for at, name in plan.schedule(list(services)):
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))  # the schedule, not a wait for a state
        await services[name].restart()
        done[name] += 1
    return done
