"""The fair-share clock as a replica knows it (:mod:`services.dispatcher.scheduling.fair_clock`), on a real KV
bucket: another replica's starts reach the view by its watch, a replica's own starts at once, and a
start made from a view that fell behind is applied again on the latest clock, never lost."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import streams
from contracts.streams import Declarations
from contracts.subjects import Namespace
from services.dispatcher.scheduling.fair import FairState
from services.dispatcher.scheduling.fair_clock import FairClocks


@pytest.fixture
async def fair_kv(js: JetStreamContext, declared: Declarations, namespace: Namespace) -> KeyValue:
    return await js.key_value(namespace.bucket(streams.KV_DISPATCH_FAIR))


@pytest.fixture
async def replicas(fair_kv: KeyValue) -> AsyncIterator[tuple[FairClocks, FairClocks]]:
    one, two = FairClocks(fair_kv), FairClocks(fair_kv)
    await one.start()
    await two.start()
    yield one, two
    await one.stop()
    await two.stop()


async def test_a_replicas_own_start_moves_its_view_at_once_and_anothers_arrives_by_the_watch(
    replicas: tuple[FairClocks, FairClocks], fair_kv: KeyValue, js: JetStreamContext, namespace: Namespace
) -> None:
    one, two = replicas
    assert await two.state("pose") == (FairState(), None)
    await two.charge("pose", "beta", 2.0, FairState(), None)  # two knows the clock from here on
    await one.charge("pose", "acme", 1.0, *(await one.state("pose")))
    mine, mine_revision = await one.state("pose")
    stored = await fair_kv.get("pose")
    assert mine_revision == stored.revision
    assert mine == FairState.model_validate_json(stored.value or b"") == FairState(finish={"beta": 0.5, "acme": 1.0})

    reads = two.reads
    await two.caught_up(js, namespace.bucket(streams.KV_DISPATCH_FAIR))
    assert await two.state("pose") == (mine, mine_revision)
    assert two.reads == reads, "the other replica's start came by the watch, not a read"


async def test_a_start_made_from_a_view_that_fell_behind_is_applied_on_the_latest_clock(
    replicas: tuple[FairClocks, FairClocks], fair_kv: KeyValue
) -> None:
    one, two = replicas
    state, revision = await one.state("pose")
    await two.charge("pose", "beta", 2.0, *(await two.state("pose")))  # lands first
    reads = one.reads
    await one.charge("pose", "acme", 1.0, state, revision)  # from the clock before beta's start
    assert one.reads == reads + 1, "the lost compare-and-set read the clock again"
    stored = FairState.model_validate_json((await fair_kv.get("pose")).value or b"")
    assert stored == FairState(v=0.0, finish={"beta": 0.5, "acme": 1.0}), "both starts are on the clock"


async def test_starts_written_in_the_background_land_in_order_each_on_the_clock_before_it(
    replicas: tuple[FairClocks, FairClocks], fair_kv: KeyValue
) -> None:
    one, _ = replicas
    tenants = ["acme", "beta", "acme", "acme", "beta"]
    for tenant in tenants:
        one.charge_soon("pose", tenant, 1.0)  # not awaited: each waits for the one before
    await one.settled(5.0)
    expected = FairState()
    for tenant in tenants:  # acme's second start in a row only shifts the clock: not written
        expected = expected if expected.only_shifted_by(tenant, 1.0) else expected.charged(tenant, 1.0)
    stored = await fair_kv.get("pose")
    assert FairState.model_validate_json(stored.value or b"") == expected
    assert await one.state("pose") == (expected, stored.revision)
    assert one.reads == 1, "only the first start read the clock (none was known yet)"
    assert one.unwritten == 1


async def test_a_lone_tenants_starts_write_the_clock_once_and_keep_its_place_relative_to_others(
    replicas: tuple[FairClocks, FairClocks], fair_kv: KeyValue, js: JetStreamContext, namespace: Namespace
) -> None:
    one, two = replicas
    stream = f"KV_{namespace.bucket(streams.KV_DISPATCH_FAIR)}"
    before = (await js.stream_info(stream)).state.last_seq
    for _ in range(5):
        one.charge_soon("pose", "acme", 2.0)
    await one.settled(5.0)
    assert (await js.stream_info(stream)).state.last_seq == before + 1, "one write for five lone starts"
    assert one.unwritten == 4
    await two.caught_up(js, namespace.bucket(streams.KV_DISPATCH_FAIR))
    await two.charge("pose", "beta", 1.0, *(await two.state("pose")))
    every = FairState()
    for tenant, weight in [("acme", 2.0)] * 5 + [("beta", 1.0)]:
        every = every.charged(tenant, weight)
    stored = FairState.model_validate_json((await fair_kv.get("pose")).value or b"")

    def relative(state: FairState) -> dict[str, float]:
        return {tenant: tag - state.v for tenant, tag in state.finish.items()}

    assert relative(stored) == relative(every) == {"acme": 0.5, "beta": 1.0}


async def test_a_background_start_is_applied_after_another_replicas_start_that_came_first(
    replicas: tuple[FairClocks, FairClocks], fair_kv: KeyValue
) -> None:
    one, two = replicas
    await one.state("pose")  # one's view: no start yet
    await two.charge("pose", "beta", 2.0, *(await two.state("pose")))
    one.charge_soon("pose", "acme", 1.0)  # from a view that fell behind: read again and applied
    await one.settled(5.0)
    stored = FairState.model_validate_json((await fair_kv.get("pose")).value or b"")
    assert stored == FairState().charged("beta", 2.0).charged("acme", 1.0)
