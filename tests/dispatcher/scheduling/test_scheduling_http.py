"""Scheduling fields as a client sends them: priority, delay_s and concurrency_key through the
gateway's HTTP API to the real dispatcher (the quotas' 429s: tests/gateway/jobs/test_admission.py)."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext

from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route
from tests.support.gateway import Tenant
from tests.support.scheduling import InstantBackend, entries_queued, start_order


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    """URL inputs allowed (the jobs are never fetched: the backend stands in for the worker)."""
    return {"allow_url_inputs": True}


async def post(acme: Tenant, **spec: object) -> str:
    """POST /v1/jobs; the new job's id."""
    response = await acme.http.post("/v1/jobs", json=POSE | spec)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


async def test_priority_sent_over_http_orders_the_tenants_jobs(
    start_dispatcher: StartDispatcher, instant: InstantBackend, acme: Tenant, event_log: EventLog
) -> None:
    dispatcher = await start_dispatcher({"pose": local_route("noop", concurrency=1)}, backends={"local": instant})
    first = await post(acme)
    await entries_queued(dispatcher, "pose", 1)
    low = await post(acme, priority=1)
    high = await post(acme, priority=9)
    await entries_queued(dispatcher, "pose", 3)
    instant.gate.set()
    await event_log.wait_ended([first, low, high], 30)
    order = start_order(event_log, [first, low, high])
    assert order.index(high) < order.index(low)  # low never outranks `first` (older, priority 5)


async def test_delay_s_sent_over_http_holds_the_job_while_a_later_one_passes(
    start_dispatcher: StartDispatcher, instant: InstantBackend, acme: Tenant, event_log: EventLog
) -> None:
    instant.gate.set()
    await start_dispatcher({"pose": local_route("noop", concurrency=1)}, backends={"local": instant})
    delayed = await post(acme, delay_s=1.0)
    later = await post(acme)
    await event_log.wait_ended([delayed, later], 30)
    created, started = event_log.first(delayed, "job.created"), event_log.first(delayed, "job.dispatched")
    passed = event_log.first(later, "job.dispatched")
    assert created is not None
    assert started is not None
    assert passed is not None
    assert (started.time - created.time).total_seconds() >= 1.0
    assert passed.time < started.time


async def test_concurrency_key_sent_over_http_runs_one_of_its_jobs_at_a_time(
    start_dispatcher: StartDispatcher, instant: InstantBackend, acme: Tenant, event_log: EventLog, js: JetStreamContext
) -> None:
    instant.run_s = 0.3
    instant.gate.set()
    await start_dispatcher({"pose": local_route("noop", concurrency=3)}, backends={"local": instant})
    same = [await post(acme, concurrency_key="user-1") for _ in range(2)]
    other = await post(acme, concurrency_key="user-2")
    await event_log.wait_ended([*same, other], 30)

    def span(job: str) -> tuple[float, float]:
        began, ended = event_log.first(job, "job.dispatched"), event_log.first(job, "job.succeeded")
        assert began is not None
        assert ended is not None
        return began.time.timestamp(), ended.time.timestamp()

    (_, first_end), (second_start, second_end) = sorted(span(j) for j in same)
    assert second_start >= first_end  # the key's limit (1): the second waited for the first to end
    other_start, _ = span(other)
    assert other_start < second_end  # another key is not held back by user-1's line
