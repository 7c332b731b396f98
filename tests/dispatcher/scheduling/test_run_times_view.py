"""Run times from a watched view of KV ``dispatch_runtimes``: a job's ETA and its run's tally read nothing
(issue 34: two message gets a job before), two replicas' tallies still add up (a stale view loses its
compare-and-set and reads), and an unstarted view reads as before."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import streams
from contracts.streams import Declarations
from contracts.subjects import Namespace
from services.dispatcher.scheduling.run_times import ALL_SIZES, RunTimes, RunTimesDoc

WINDOW = 20


@pytest.fixture
async def bucket(js: JetStreamContext, declared: Declarations, namespace: Namespace) -> KeyValue:
    return await js.key_value(namespace.bucket(streams.KV_DISPATCH_RUNTIMES))


@pytest.fixture
async def replicas(bucket: KeyValue) -> AsyncIterator[tuple[RunTimes, RunTimes]]:
    """Two dispatcher replicas' run times, watching."""
    pair = RunTimes(bucket, WINDOW), RunTimes(bucket, WINDOW)
    for runtimes in pair:
        await runtimes.start()
    try:
        yield pair
    finally:
        for runtimes in pair:
            await runtimes.stop()


async def stored(bucket: KeyValue, kind: str) -> list[float]:
    return RunTimesDoc.model_validate_json((await bucket.get(kind)).value or b"{}").by_size[ALL_SIZES]


async def test_a_tally_and_the_eta_read_nothing(replicas: tuple[RunTimes, RunTimes], bucket: KeyValue) -> None:
    one, _ = replicas
    assert await one.median("pose", "s3") is None  # no run yet
    await one.observe("pose", [("s3", 2.0), ("s3", 4.0), ("s3", 3.0)])
    await one.observe("pose", [("s3", 5.0)])
    assert await one.median("pose", "s3") == 3.5
    assert one.reads == 0
    assert await stored(bucket, "pose") == [2.0, 4.0, 3.0, 5.0]


async def test_two_replicas_tallies_add_up_through_a_stale_view(
    replicas: tuple[RunTimes, RunTimes], bucket: KeyValue, js: JetStreamContext, namespace: Namespace
) -> None:
    one, two = replicas
    await one.observe("pose", [("s3", 1.0)])
    await two.observe("pose", [("s3", 2.0)])  # its view may not have one's write yet: a lost CAS reads KV
    await one.observe("pose", [("s3", 3.0)])
    assert await stored(bucket, "pose") == [1.0, 2.0, 3.0]
    await two.caught_up(js, namespace.bucket(streams.KV_DISPATCH_RUNTIMES))
    assert await two.median("pose", ALL_SIZES) == 2.0


async def test_an_unstarted_view_reads_as_before(bucket: KeyValue) -> None:
    runtimes = RunTimes(bucket, WINDOW)
    await runtimes.observe("pose", [("s3", 2.0)])
    assert await runtimes.median("pose", "s3") == 2.0  # fewer than MIN_SAMPLES in s3: all sizes
    assert runtimes.reads == 1  # the tally's read; the median came from the cache it left
    assert await stored(bucket, "pose") == [2.0]
