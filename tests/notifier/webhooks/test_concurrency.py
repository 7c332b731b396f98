"""Concurrent webhook sends to one endpoint: several jobs at once, each job in order, within the
endpoint's concurrency limit and rate."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.subjects import Subjects
from tests.support.events import create_endpoint, create_job, job_event, publish
from tests.support.http import bound_socket, serve
from tests.support.notifier import Notifier

JOBS, PER_JOB = 12, 4


@dataclass
class SlowReceiver:
    """Answers 200 after ``delay_s``; records each job's event ids in arrival order, the most requests
    in flight at once and when each arrived."""

    delay_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    by_job: dict[str, list[str]] = field(default_factory=dict)
    arrivals: list[float] = field(default_factory=list)
    in_flight: int = 0
    most: int = 0

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            envelope = json.loads(await request.body())
            with self.lock:
                self.in_flight += 1
                self.most = max(self.most, self.in_flight)
                self.arrivals.append(time.monotonic())
                self.by_job.setdefault(envelope["job_id"], []).append(envelope["id"])
            await asyncio.sleep(self.delay_s)
            with self.lock:
                self.in_flight -= 1
            return Response(b"ok")

        return Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])])

    def count(self) -> int:
        """Distinct events received (delivery is at least once: a retried one may come again)."""
        with self.lock:
            return sum(len(set(ids)) for ids in self.by_job.values())

    def first_seen(self, job: str) -> list[str]:
        """The job's event ids in the order each first arrived."""
        with self.lock:
            return list(dict.fromkeys(self.by_job.get(job, [])))


@pytest.fixture
def slow_receiver(request: pytest.FixtureRequest) -> Iterator[tuple[SlowReceiver, str]]:
    rx = SlowReceiver(getattr(request, "param", 0.1))
    sock = bound_socket()
    with serve(rx.app(), sock):
        yield rx, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _publish_jobs(
    js: JetStreamContext, subjects: Subjects, jobs_kv: KeyValue, n_jobs: int
) -> dict[str, list[str]]:
    """``PER_JOB`` events for each of ``n_jobs`` jobs, interleaved; each job's event ids in stream order."""
    jobs = [await create_job(jobs_kv, "acme") for _ in range(n_jobs)]
    sent: dict[str, list[str]] = {job: [] for job in jobs}
    for _ in range(PER_JOB):
        for job in jobs:
            event = job_event("acme", job, EventType.JOB_LOG)
            await publish(js, subjects, event)
            sent[job].append(event.id)
    return sent


@pytest.mark.parametrize("notifier_overrides", [{"webhook_endpoint_concurrency": 6}])
async def test_jobs_are_sent_concurrently_to_one_endpoint_each_in_order(
    notifier: Notifier,
    slow_receiver: tuple[SlowReceiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = slow_receiver
    await create_endpoint(webhooks_kv, "acme", f"{base}/hook")
    sent = await _publish_jobs(js, subjects, jobs_kv, JOBS)
    # one at a time this takes JOBS × PER_JOB × 0.1 s = 4.8 s
    await wait_for(lambda: rx.count() >= JOBS * PER_JOB, timeout_s=20, what="every delivery")
    # each job's events in stream order (at least once: a delivery retried under load may come again)
    assert {job: rx.first_seen(job) for job in sent} == sent
    assert 2 <= rx.most <= 6  # jobs overlap, within the endpoint's limit


@pytest.mark.parametrize("slow_receiver", [0.0], indirect=True)
@pytest.mark.parametrize("notifier_overrides", [{"webhook_endpoint_concurrency": 8, "webhook_endpoint_rate_per_s": 20}])
async def test_the_endpoint_rate_spaces_the_attempts(
    notifier: Notifier,
    slow_receiver: tuple[SlowReceiver, str],
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
    webhooks_kv: KeyValue,
) -> None:
    rx, base = slow_receiver
    await create_endpoint(webhooks_kv, "acme", f"{base}/hook")
    sent = await _publish_jobs(js, subjects, jobs_kv, 5)  # 20 deliveries
    await wait_for(lambda: rx.count() >= 20, timeout_s=20, what="every delivery")
    assert {job: rx.first_seen(job) for job in sent} == sent
    span = rx.arrivals[-1] - rx.arrivals[0]
    assert span >= 19 / 20 * 0.9  # 20 starts at most 20/s apart (a little slack for the clocks)
