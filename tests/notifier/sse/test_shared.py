"""The shared SSE live tail: catch-up handed over to the hub by sequence (no gap, no duplicate) while
events are published, slow taps sent back to the stream, and one JOBS consumer whatever the connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.streams import JOBS, Declarations
from contracts.subjects import Namespace, Subjects
from services.common.auth.apikeys import ApiKeyStore
from services.notifier.sse.catch_up import CatchUpReader
from services.notifier.sse.direct_get import Stored
from services.notifier.sse.hub import job_key, tenant_key
from services.notifier.sse.tap import Tap
from tests.notifier.sse.client import SseReader
from tests.support.events import create_job, job_event, publish
from tests.support.notifier import Notifier, shared_hub, sse_streams


async def _read(tap: Tap, last: dict[str, int], gate: asyncio.Event) -> list[int]:
    """Sequences from ``tap`` until ``last["seq"]`` (set once known), read while ``gate`` is set (cleared:
    a stalled client)."""
    seqs: list[int] = []
    async with tap:
        while not (seqs and seqs[-1] >= last.get("seq", 2**64)):
            await gate.wait()
            if (item := await tap.get(1.0)) is not None:
                seqs.append(item.seq)
    return seqs


class RacingReader(CatchUpReader):
    """A catch-up reader that, when it finds the end while its tap is armed, has an event published and
    delivered by the hub before it answers: stored after the read, so only the hand-over can carry it."""

    def __init__(self, tap: Tap, publish_one: Callable[[], Awaitable[int]]) -> None:
        r = tap.reader
        super().__init__(r.nc, r.js, r.stream, r.subjects, r.batch, r.direct)
        self.tap, self.publish_one, self.raced = tap, publish_one, 0

    async def next(self, after: int, room: int = 1) -> Stored | None:
        msg = await super().next(after, room)
        if msg is None and self.tap.armed:
            self.raced += 1
            seq = await self.publish_one()
            await wait_for(lambda: self.tap.hub.head >= seq, what="the hub to deliver the racing event")
        return msg


async def test_catch_up_hands_over_to_the_live_tail_while_events_are_published(
    nc: NatsClient, js: JetStreamContext, namespace: Namespace, subjects: Subjects, declared: Declarations
) -> None:
    jobs = ["job_handover_a", "job_handover_b"]
    published: dict[str, list[int]] = {job: [] for job in jobs}

    async def put_one(job: str) -> int:
        seq = await publish(js, subjects, job_event("acme", job, EventType.JOB_LOG))
        published[job].append(seq)
        return seq

    async def put(n: int) -> None:
        for i in range(n):
            await put_one(jobs[i % 2])

    async with shared_hub(nc, js, namespace) as hub:
        await put(150)  # a backlog to catch up on
        mid = published[jobs[0]][40]
        job_subject, tenant = subjects.job_events("acme", jobs[0]), [subjects.tenant_jobs("acme")]
        taps = {
            "from the start": Tap(hub, job_key("acme", jobs[0]), [job_subject], 0, 8),
            "after the middle": Tap(hub, job_key("acme", jobs[0]), [job_subject], mid, 8),
            "tenant": Tap(hub, tenant_key("acme"), tenant, 0, 16),
            "slow": Tap(hub, job_key("acme", jobs[0]), [job_subject], 0, 4),
        }
        for name in ("from the start", "tenant"):
            taps[name].reader = RacingReader(taps[name], lambda: put_one(jobs[0]))
        gates = {name: asyncio.Event() for name in taps}
        for gate in gates.values():
            gate.set()
        last: dict[str, dict[str, int]] = {name: {} for name in taps}
        readers = {name: asyncio.create_task(_read(tap, last[name], gates[name])) for name, tap in taps.items()}
        await put(200)  # published while every tap catches up and hands over
        await wait_for(lambda: taps["slow"].live, what="the slow tap on the live tail")
        gates["slow"].clear()  # it stops reading: its buffer fills
        await put(200)
        gates["slow"].set()
        await wait_for(lambda: all(tap.live for tap in taps.values()), what="every tap on the live tail")
        final = await put_one(jobs[0])
        for box in last.values():
            box["seq"] = final
        got = {name: await asyncio.wait_for(task, 30) for name, task in readers.items()}
        consumers = (await js.stream_info(namespace.stream(JOBS))).state.consumer_count
    ours = sorted(published[jobs[0]])
    assert got["from the start"] == ours
    assert got["slow"] == ours
    assert got["after the middle"] == [seq for seq in ours if seq > mid]
    assert got["tenant"] == sorted(published[jobs[0]] + published[jobs[1]])
    for name in ("from the start", "tenant"):  # the racing events came through the hand-overs
        assert taps[name].handed_over >= 1
    assert taps["slow"].catch_ups > 1  # its full buffer sent it back to the stream, without a gap
    assert consumers == 1  # the hub's, for every tap


@contextlib.asynccontextmanager
async def _stream(http: httpx.AsyncClient, path: str, after: int) -> AsyncIterator[SseReader]:
    async with http.stream("GET", path, headers={"Last-Event-ID": str(after)}) as response:
        assert response.status_code == 200
        yield SseReader(response.aiter_lines())


async def test_many_connections_share_one_consumer_and_each_gets_its_events_in_order(
    notifier: Notifier, keys: ApiKeyStore, js: JetStreamContext, subjects: Subjects, jobs_kv: KeyValue
) -> None:
    _, key = await keys.create("acme")
    jobs = [await create_job(jobs_kv, "acme") for _ in range(8)]
    published = {job: [await publish(js, subjects, job_event("acme", job, EventType.JOB_LOG))] for job in jobs}

    async def put(job: str, kind: EventType) -> None:
        published[job].append(await publish(js, subjects, job_event("acme", job, kind)))

    stream = notifier.settings.ns.stream(JOBS)
    consumers_idle = (await js.stream_info(stream)).state.consumer_count  # the fan-out: no tap, no hub
    streams = 40
    async with (
        httpx.AsyncClient(base_url=notifier.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        readers = []
        for i in range(streams):
            job = jobs[i % len(jobs)]
            after = 0 if i % 2 else published[job][0]  # half replay the first event, half resume after it
            reader = await stack.enter_async_context(_stream(http, f"/v1/jobs/{job}/events", after))
            readers.append((job, after, reader))
            await put(job, EventType.JOB_LOG)  # published during the hand-overs

        async def every_tap() -> bool:  # a stream's tap follows just after its response began, not before
            return await sse_streams(notifier, js) == streams

        await wait_for(every_tap, what="the streams' taps")
        assert (await js.stream_info(stream)).state.consumer_count == consumers_idle + 1  # the hub, for all
        for job in jobs:
            await put(job, EventType.JOB_SUCCEEDED)
        for job, after, reader in readers:
            seqs = []
            while (frame := await reader.next()) is not None:
                seqs.append(int(frame.id or 0))
            assert seqs == [s for s in published[job] if s > after]
    await wait_for(lambda: _no_streams(notifier, js), what="every tap freed")


async def _no_streams(notifier: Notifier, js: JetStreamContext) -> bool:
    return await sse_streams(notifier, js) == 0
