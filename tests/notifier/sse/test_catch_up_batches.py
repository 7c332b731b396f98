"""A long catch-up reads in batches: 1,000 stored events reach a tap in order for at most ten requests."""

from __future__ import annotations

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from bench.harness.message_counter import counting
from contracts.events.registry import EventType
from contracts.streams import JOBS, Declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.embedded import EmbeddedNats
from services.notifier.sse.hub import Hub, job_key
from services.notifier.sse.tap import Tap
from tests.support.events import job_event, publish

EVENTS = 1_000
REQUESTS = ("stream msg get", "direct get", "consumer create", "consumer delete", "pull request", "consumer info")


async def test_a_catch_up_of_a_thousand_events_costs_at_most_ten_requests(
    nats_server: EmbeddedNats,
    nc: NatsClient,
    js: JetStreamContext,
    namespace: Namespace,
    subjects: Subjects,
    declared: Declarations,
) -> None:
    published = [await publish(js, subjects, job_event("acme", "job_long", EventType.JOB_LOG)) for _ in range(EVENTS)]
    stream = namespace.stream(JOBS)
    hub = Hub(nc, js, stream, namespace.subject(""), 64, 5.0)
    await hub.start()
    try:
        async with counting(nats_server.url) as counter, counter.window() as tally:
            got = []
            async with Tap(hub, job_key("acme", "job_long"), [subjects.job_events("acme", "job_long")], 0, 256) as tap:
                while len(got) < EVENTS:
                    item = await tap.get(5.0)
                    assert item is not None, f"the catch-up stalled after {len(got)} events"
                    got.append(item.seq)
                assert tap.live  # it found the end and went live
    finally:
        await hub.stop()
    assert got == published
    requests = sum(n for (kind, source), n in tally.sources.items() if kind in REQUESTS and f".{stream}" in source)
    assert requests <= 10, tally.breakdown(20)
