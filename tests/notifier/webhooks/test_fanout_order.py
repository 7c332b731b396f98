"""The webhook fan-out keeps an endpoint's queue in stream order when a batch cannot be fanned out yet, and
when one publish of a batch fails while the next ones of the same job would have been stored.

The fan-out reads through one long pull, so the events after a batch are already on their way while it
is handled. A batch met by an endpoints cache that has not seen every KV write (``caught_up`` timed out)
was naked alone, and the events behind it were fanned out before it came back: an endpoint got one
job's event after the next two (a fresh-clone CI run of tests/faults/test_replicas_under_load.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from bench.harness.waiting import wait_for
from contracts.envelope import EventEnvelope
from contracts.events.registry import EventType
from contracts.streams import JOBS, WEBHOOK_DELIVERIES
from contracts.subjects import Namespace, Subjects
from services.common.nats.connection import cancel_and_wait
from services.common.nats.server.embedded import EmbeddedNats
from services.common.webhook_queue import H_EVENT, QueuedDelivery, enqueue
from services.notifier.settings import NotifierSettings
from services.notifier.state import NotifierState, open_state
from services.notifier.webhooks import fanout as fanout_module
from services.notifier.webhooks.delivery_loops import DeliveryLoops
from services.notifier.webhooks.fanout import FANOUT_DURABLE, FanOut
from services.notifier.webhooks.targets import JobHooks
from tests.support.events import create_endpoint, create_job, job_event, publish, stored_on
from tests.support.notifier import notifier_settings

pytestmark = pytest.mark.timeout(60)
EVENTS = 4


class _NoDelivery:
    """The fan-out's delivery loops, not started: the queue is read here, not delivered."""

    def ensure(self, tenant: str, queue: str) -> None:
        """Nothing: no delivery runs in this test."""


@dataclass
class OneJob:
    """A notifier's state on a fresh server, one endpoint of tenant acme, one job's events (not stored yet)
    and a declared fan-out, not running."""

    settings: NotifierSettings
    nc: NatsClient
    state: NotifierState
    endpoint_id: str
    events: list[EventEnvelope]
    fanout: FanOut

    async def publish(self, event: EventEnvelope) -> None:
        """Store ``event`` on JOBS."""
        await publish(self.state.js, self.settings.subjects, event)

    async def fanned_out(self) -> list[str]:
        """Run the fan-out until the endpoint's queue holds every event; the event ids there, in order."""
        running = asyncio.create_task(self.fanout.run())
        try:
            return await _queue(self.state.js, self.settings, self.endpoint_id, EVENTS)
        finally:
            await cancel_and_wait([running])


@pytest.fixture
async def one_job(tmp_path: Path) -> AsyncIterator[OneJob]:
    """See :class:`OneJob`."""
    with EmbeddedNats(tmp_path / "nats") as server:
        settings = notifier_settings(server.url, Namespace(), tmp_path)
        nc = await nats.connect(server.url)
        try:
            state = await open_state(settings, nc)
            endpoint = await create_endpoint(state.webhooks, "acme", "http://127.0.0.1:9/hook")
            await state.endpoints.start()
            job_id = await create_job(state.jobs, "acme")
            events = [job_event("acme", job_id, EventType.JOB_LOG) for _ in range(EVENTS)]
            fanout = FanOut(
                settings, state.js, state.endpoints, JobHooks(state.jobs), cast(DeliveryLoops, _NoDelivery())
            )
            await fanout.declare()
            yield OneJob(settings, nc, state, endpoint.id, events, fanout)
            await state.endpoints.stop()
        finally:
            await nc.close()


async def test_a_batch_met_by_an_endpoints_cache_behind_reaches_the_queue_before_the_events_after_it(
    one_job: OneJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, events = one_job.state, one_job.events
    caught_up, checks = state.endpoints.caught_up, 0

    async def behind_at_first() -> None:
        """The first check, on the first event alone, times out once the rest are on their way here."""
        nonlocal checks
        checks += 1
        if checks > 1:
            return await caught_up()
        for event in events[1:]:
            await one_job.publish(event)

        async def all_sent() -> bool:
            info = await state.js.consumer_info(one_job.settings.ns.stream(JOBS), FANOUT_DURABLE)
            return (info.delivered.consumer_seq or 0) >= EVENTS

        await wait_for(all_sent, 10, "the later events sent to the fan-out's open pull")
        await one_job.nc.flush()
        await asyncio.sleep(0.2)  # handed to the pull's inbox
        raise TimeoutError

    monkeypatch.setattr(state.endpoints, "caught_up", behind_at_first)
    await one_job.publish(events[0])
    queued = await one_job.fanned_out()
    assert checks >= 2, "the first batch was never met by the cache behind"
    assert queued == [event.id for event in events]


async def test_a_publish_failed_mid_batch_leaves_no_later_delivery_of_its_job_stored_before_it(
    one_job: OneJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queue's leader lost mid-batch fails one publish while the next reach the new leader; the batch is
    fanned out again. The failure is the only thing faked: the first publish of the job's second event."""
    events, failed = one_job.events, list[str]()

    async def lost_once(js: JetStreamContext, subjects: Subjects, delivery: QueuedDelivery,
                        body: bytes, msg_id: str) -> object:  # fmt: skip
        if delivery.event_id == events[1].id and not failed:
            failed.append(delivery.event_id)
            raise nats.errors.TimeoutError
        return await enqueue(js, subjects, delivery, body, msg_id)

    monkeypatch.setattr(fanout_module, "enqueue", lost_once)
    for event in events:  # stored before the fan-out pulls: one batch
        await one_job.publish(event)
    queued = await one_job.fanned_out()
    assert failed == [events[1].id]
    assert queued == [event.id for event in events]


async def _queue(js: JetStreamContext, settings: NotifierSettings, endpoint_id: str, count: int) -> list[str]:
    """The event ids in the endpoint's delivery queue, in order, once it holds ``count``."""
    stream = settings.ns.stream(WEBHOOK_DELIVERIES)
    subject = settings.subjects.webhook_deliver("acme", endpoint_id)

    async def read() -> list[str]:
        return [(msg.headers or {}).get(H_EVENT, "") for msg in await stored_on(js, stream, subject)]

    async def full() -> bool:
        return len(await read()) >= count

    await wait_for(full, 20, f"{count} deliveries queued")
    return await read()
