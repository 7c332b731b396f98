"""SSE catch-ups in batches of direct gets (services/notifier/sse/catch_up.py): 1,000 stored events for
at most ten requests, in order; a hand-over to the live tail without gap or repeat while events race the
round's start; a lagging replica's empty and short batches never taken for the end; and, on a stream
declared without ``allow_direct``, a message get per event with one warning."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from bench.harness.catch_up_cost import NoFollower
from bench.harness.message_counter import MessageCounter, counting
from bench.harness.waiting import wait_for
from contracts.events.registry import EventType
from contracts.streams import JOBS, Declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.declarations import apply_declarations
from services.common.nats.server.embedded import EmbeddedNats
from services.notifier.sse.catch_up import BATCH, CatchUpReader
from services.notifier.sse.direct_get import Stored
from services.notifier.sse.hub import Hub, job_key, tenant_key
from services.notifier.sse.tap import Tap
from tests.support.events import job_event, publish
from tests.support.notifier import shared_hub

EVENTS = 1_000
REQUESTS = ("stream msg get", "direct get", "stream info", "consumer create", "pull request", "consumer delete")


async def _take(tap: Tap, n: int) -> list[int]:
    """The sequences of the next ``n`` events of ``tap`` (each within 5 s, else the catch-up stalled)."""
    got: list[int] = []
    while len(got) < n:
        item = await tap.get(5.0)
        assert item is not None, f"the catch-up stalled after {len(got)} events"
        got.append(item.seq)
    return got


async def _hub_pulling(counter: MessageCounter, stream: str, hub: Hub) -> None:
    """Have the hub read (someone follows) and wait until its consumer has sent its first pull (it lasts
    30 s): out of the window to come."""
    await hub.follow(job_key("acme", "-"), NoFollower())
    source = ("pull request", f"$JS.API.CONSUMER.MSG.NEXT.{stream}")
    await wait_for(lambda: counter.tally.sources[source] >= 1, what="the hub's first pull")


def _requests(sources: dict[tuple[str, str], int], stream: str) -> dict[str, int]:
    """Requests on ``stream`` by kind."""
    out: dict[str, int] = {}
    for (kind, source), n in sources.items():
        if kind in REQUESTS and f".{stream}." in f"{source}.":
            out[kind] = out.get(kind, 0) + n
    return out


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
    async with counting(nats_server.url) as counter, shared_hub(nc, js, namespace, 5.0) as hub:
        await _hub_pulling(counter, stream, hub)
        tap = Tap(hub, job_key("acme", "job_long"), [subjects.job_events("acme", "job_long")], 0, 256)
        async with counter.window() as tally, tap:
            got = await _take(tap, EVENTS)
            assert tap.live  # it found the end and went live
    assert got == published
    requests = _requests(tally.sources, stream)
    assert sum(requests.values()) <= 10, tally.breakdown(20)
    # The leader's end, then batches of the buffer's room (the old catch-up: 1,001 message gets).
    assert requests == {"stream msg get": 1, "direct get": math.ceil(EVENTS / BATCH)}, tally.breakdown(20)


class RaceMidRound(CatchUpReader):
    """A catch-up reader that, before its 4th batch, has events published and delivered by the hub: stored
    after the round began (and, on the tenant tap, after its uploads were read to their end), only the
    hand-over may carry them."""

    def __init__(self, tap: Tap, race: Callable[[], Awaitable[list[int]]]) -> None:
        r = tap.reader
        super().__init__(r.nc, r.js, r.stream, r.subjects, r.batch, r.direct)
        self.tap, self.race, self.batches = tap, race, 0

    async def batch_of(self, subject: str, start: int, count: int) -> list[Stored]:
        self.batches += 1
        if self.batches == 4:
            seqs = await self.race()
            await wait_for(lambda: self.tap.hub.head >= max(seqs), what="the hub to deliver the racing events")
        return await super().batch_of(subject, start, count)


async def test_the_hand_over_to_the_live_tail_has_no_gap_and_no_repeat(
    nc: NatsClient, js: JetStreamContext, namespace: Namespace, subjects: Subjects, declared: Declarations
) -> None:
    jobs: dict[str, list[int]] = {"job_a": [], "job_b": []}
    uploads: list[int] = []

    async def job(name: str) -> int:
        jobs[name].append(await publish(js, subjects, job_event("acme", name, EventType.JOB_LOG)))
        return jobs[name][-1]

    async def upload() -> int:
        body = b'{"type": "upload.completed", "tenant": "acme"}'
        uploads.append((await js.publish(namespace.subject("uploads.acme.upl_1.completed"), body)).seq)
        return uploads[-1]

    async def race() -> list[int]:  # an upload first: a later batch of the tenant tap's jobs brings the rest
        return [await upload(), await job("job_a"), await job("job_b"), await upload(), await job("job_a")]

    for _ in range(20):  # the backlog: uploads, then job_a and job_b
        await upload()
    for n in range(100):
        await job("job_a" if n % 2 else "job_b")
    tenant = [subjects.tenant_jobs("acme"), namespace.subject("uploads.acme.>")]
    async with shared_hub(nc, js, namespace, 5.0) as hub:
        taps = {
            "job": Tap(hub, job_key("acme", "job_a"), [subjects.job_events("acme", "job_a")], 0, 16),
            "tenant": Tap(hub, tenant_key("acme"), tenant, 0, 16),
        }
        for tap in taps.values():
            tap.reader = RaceMidRound(tap, race)
        got: dict[str, list[int]] = {}
        want: dict[str, list[int]] = {}
        for name, tap in taps.items():
            async with tap:  # its events so far, and the race's (2 of job_a, 5 in all)
                expected = len(jobs["job_a"]) + 2 if name == "job" else sum(map(len, jobs.values())) + len(uploads) + 5
                got[name] = await _take(tap, expected)
                assert tap.live
                live = await job("job_a")  # after the hand-over, from the hub
                got[name] += await _take(tap, 1)
                assert got[name][-1] == live
            want[name] = jobs["job_a"][:] if name == "job" else sorted(jobs["job_a"] + jobs["job_b"] + uploads)
    assert got == want
    assert taps["job"].handed_over == 2  # job_a's racing events, by the hand-over only
    assert taps["tenant"].handed_over == 5


class LaggingReplica(CatchUpReader):
    """Direct gets answered as by a replica behind the leader: it holds messages up to ``holds[i]`` on
    its ``i``-th answer (then all): what it returns is a prefix, maybe empty, of what is stored."""

    def __init__(self, tap: Tap, holds: list[int]) -> None:
        r = tap.reader
        super().__init__(r.nc, r.js, r.stream, r.subjects, r.batch, r.direct)
        self.holds = holds

    async def batch_of(self, subject: str, start: int, count: int) -> list[Stored]:
        got = await super().batch_of(subject, start, count)
        if self.holds:
            holds = self.holds.pop(0)
            got = [msg for msg in got if msg.seq <= holds]
        return got


async def test_a_lagging_replicas_empty_and_short_batches_skip_nothing(
    nc: NatsClient, js: JetStreamContext, namespace: Namespace, subjects: Subjects, declared: Declarations
) -> None:
    await publish(js, subjects, job_event("acme", "job_before", EventType.JOB_LOG))
    published = [await publish(js, subjects, job_event("acme", "job_lag", EventType.JOB_LOG)) for _ in range(300)]
    async with shared_hub(nc, js, namespace, 5.0) as hub:
        tap = Tap(hub, job_key("acme", "job_lag"), [subjects.job_events("acme", "job_lag")], 0, 64)
        # It lacks the job's first event at first (an empty batch), then lags behind twice (short ones).
        tap.reader = LaggingReplica(tap, [published[0] - 1, published[10], published[0] - 1, published[150]])
        async with tap:
            got = await _take(tap, len(published))
            assert tap.live
    assert got == published
    assert isinstance(tap.reader, LaggingReplica)
    assert tap.reader.lagging == 2  # two answers brought nothing before the end: the leader was asked


async def test_a_stream_without_allow_direct_is_read_one_get_per_event_with_one_warning(
    nats_server: EmbeddedNats,
    nc: NatsClient,
    js: JetStreamContext,
    namespace: Namespace,
    subjects: Subjects,
    decls: Declarations,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = tuple(s.model_copy(update={"allow_direct": False}) for s in decls.streams)
    await apply_declarations(js, decls.model_copy(update={"streams": old}))  # as declared before allow_direct
    published = [await publish(js, subjects, job_event("acme", "job_old", EventType.JOB_LOG)) for _ in range(20)]
    stream = namespace.stream(JOBS)
    caplog.set_level(logging.WARNING, logger="services.notifier.sse.catch_up")
    async with counting(nats_server.url) as counter, shared_hub(nc, js, namespace, 5.0) as hub:
        await _hub_pulling(counter, stream, hub)
        async with counter.window() as tally:
            for _ in range(2):
                async with Tap(hub, job_key("acme", "job_old"), [subjects.job_events("acme", "job_old")], 0, 8) as tap:
                    assert await _take(tap, len(published)) == published
    # A reader not told (its stream changed under it) finds out at its first batch: no replica answers it, a
    # 503 (out of the counter's sight: its subscription on ">" takes the request, so no 503 would come).
    reader = CatchUpReader(nc, js, stream, [subjects.job_events("acme", "job_old")])
    read = [msg.seq for msg in [await reader.next(0)] if msg is not None]
    while (msg := await reader.next(read[-1])) is not None:
        read.append(msg.seq)
    assert _requests(tally.sources, stream) == {"stream msg get": 2 * (len(published) + 1)}
    assert read == published
    assert not reader.direct.allowed
    warning = (
        f"stream {stream} lacks allow_direct: SSE catch-ups read one message get per event; run "
        "`gpurelay nats declare` and restart the notifiers to read them in batches"
    )
    assert [r.message for r in caplog.records if "allow_direct" in r.message] == [warning, warning]  # one each
