"""The shared SSE live tail reads only while a connection follows something (issue 34): no consumer on
JOBS and no event delivered to a notifier with no SSE connection; the first tap makes the hub's consumer
before its catch-up, so nothing stored meanwhile is lost to it, and the last one to go ends it."""

from __future__ import annotations

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.streams import JOBS, Declarations
from contracts.subjects import Namespace, Subjects
from services.notifier.sse.hub import job_key
from services.notifier.sse.tap import Tap
from tests.support.events import job_event, publish
from tests.support.notifier import shared_hub

JOB = "job_followed"


async def _consumers(js: JetStreamContext, namespace: Namespace) -> int:
    return int((await js.stream_info(namespace.stream(JOBS))).state.consumer_count)


async def _read_until(tap: Tap, last: int) -> list[int]:
    seqs: list[int] = []
    while not seqs or seqs[-1] < last:
        item = await tap.get(10.0)
        assert item is not None, f"nothing more after {seqs}"
        seqs.append(item.seq)
    return seqs


async def test_the_hub_reads_only_while_a_tap_follows_and_each_tap_gets_every_event(
    nc: NatsClient, js: JetStreamContext, namespace: Namespace, subjects: Subjects, declared: Declarations
) -> None:
    async def put() -> int:
        return await publish(js, subjects, job_event("acme", JOB, EventType.JOB_LOG))

    async with shared_hub(nc, js, namespace) as hub:
        ours = [await put() for _ in range(3)]
        for _ in range(3):
            await publish(js, subjects, job_event("acme", "job_nobody_follows", EventType.JOB_LOG))
        assert await _consumers(js, namespace) == 0  # nobody follows: no consumer, nothing delivered
        assert hub.head == 0
        assert not hub.reading
        subject = [subjects.job_events("acme", JOB)]
        for round_ in range(2):  # the second time after the first tap ended the hub's consumer
            async with Tap(hub, job_key("acme", JOB), subject, 0, 8) as tap:
                assert await _consumers(js, namespace) == 1
                ours.append(await put())  # stored while the tap catches up: the live tail carries it
                got = await _read_until(tap, ours[-1])
                ours.append(await put())  # stored once it is live
                got += await _read_until(tap, ours[-1])
            assert got == ours, f"round {round_}"
            await wait_for(lambda: _none_left(js, namespace), what="the hub's consumer ended with its last tap")
            assert hub.feeds == round_ + 1


async def _none_left(js: JetStreamContext, namespace: Namespace) -> bool:
    return await _consumers(js, namespace) == 0
