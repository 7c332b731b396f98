"""Acceptance: a kind's slots are shared fairly between tenants, by weight; priority orders a tenant's jobs."""

from __future__ import annotations

import random

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.subjects import Subjects
from services.dispatcher.scheduling.fair import Candidate, FairState, pick
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, submit
from tests.support.scheduling import InstantBackend, count_dispatched, entries_queued, start_order


async def submit_many(
    js: JetStreamContext, kv: KeyValue, subjects: Subjects, tenants: list[str], **spec: object
) -> list[str]:
    """One job per entry of ``tenants`` (in that order)."""
    return [await submit(js, kv, subjects, POSE | spec, tenant=t) for t in tenants]


@pytest.mark.slow
async def test_a_second_tenant_starts_within_a_few_slots_of_a_200_job_backlog(
    start_dispatcher: StartDispatcher,
    instant: InstantBackend,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    instant.run_s = 0.1  # runs outlast the fold's work per job, as real ones do
    dispatcher = await start_dispatcher({"pose": local_route("noop", concurrency=2)}, backends={"local": instant})
    big = await submit_many(js, jobs_kv, subjects, ["big"] * 200)
    await entries_queued(dispatcher, "pose", len(big))
    instant.gate.set()
    small = await submit_many(js, jobs_kv, subjects, ["small"] * 10)
    await event_log.wait(lambda: count_dispatched(event_log, small) == 10, 30)
    order = start_order(event_log, big + small)
    arrived = min(e.time for j in small if (e := event_log.first(j, "job.queued")) is not None)
    before = sum(1 for j in big if (e := event_log.first(j, "job.dispatched")) is not None and e.time < arrived)
    after = order[before:]
    assert after.index(small[0]) <= 3, after[:6]  # the next few slots, not after the 200
    assert set(small) <= set(after[: 2 * len(small) + 4])  # then every other slot
    assert count_dispatched(event_log, big) < 200


@pytest.mark.slow
async def test_weights_3_to_1_give_starts_3_to_1_over_400_jobs(
    start_dispatcher: StartDispatcher,
    instant: InstantBackend,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    weights = {"heavy": 3.0, "light": 1.0}
    dispatcher = await start_dispatcher(
        {"pose": local_route("noop", concurrency=2)}, backends={"local": instant}, tenant_weights=weights
    )
    tenants = ["heavy", "heavy", "light"] * 160  # arriving 2:1; both still queued at the 400th start
    jobs = await submit_many(js, jobs_kv, subjects, tenants)
    owner = dict(zip(jobs, tenants, strict=True))
    await entries_queued(dispatcher, "pose", len(jobs))
    instant.gate.set()
    await event_log.wait(lambda: count_dispatched(event_log, jobs) >= 400, 60)
    first = [owner[j] for j in start_order(event_log, jobs)[:400]]
    ratio = first.count("heavy") / first.count("light")
    assert 2.7 <= ratio <= 3.3, ratio


async def test_priority_orders_a_tenants_jobs(
    start_dispatcher: StartDispatcher,
    instant: InstantBackend,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    dispatcher = await start_dispatcher({"pose": local_route("noop", concurrency=1)}, backends={"local": instant})
    low = await submit_many(js, jobs_kv, subjects, ["acme"] * 4, priority=1)
    high = await submit_many(js, jobs_kv, subjects, ["acme"] * 4, priority=9)
    await entries_queued(dispatcher, "pose", len(low + high))
    instant.gate.set()
    await event_log.wait_ended(low + high, 30)
    # The first job queued took the slot at once (the fold runs in partitions, so it need not be
    # low[0]); every later start must take the high-priority jobs before the low ones.
    first, *order = start_order(event_log, low + high)
    names = {j: f"{n}{i}" for n, group in (("low", low), ("high", high)) for i, j in enumerate(group)}
    # every high before every low, each group in submission order (created_at orders the queue)
    assert [names[j] for j in order] == [names[j] for j in high + low if j != first]


def test_ageing_lets_an_old_low_priority_job_overtake_and_weights_share_starts() -> None:
    old_low = Candidate("a", "acme", priority=0, enqueued_at=1000.0)
    new_high = Candidate("b", "acme", priority=9, enqueued_at=1100.0)
    one_tenant = {"acme": [old_low, new_high]}
    assert pick(one_tenant, FairState(), {}, ageing_s=1.0) is old_low  # 100 s waited longer: 100 levels > 9
    assert pick(one_tenant, FairState(), {}, ageing_s=20.0) is new_high  # 100 s: 5 levels < 9
    state, starts = FairState(), {"x": 0, "y": 0}
    queues = {t: [Candidate(t, t, 5, 0.0)] for t in starts}
    for _ in range(400):
        chosen = pick(queues, state, {"x": 3.0, "y": 1.0}, 60.0)
        assert chosen is not None
        starts[chosen.tenant] += 1
        state = state.charged(chosen.tenant, {"x": 3.0, "y": 1.0}[chosen.tenant])
    assert starts == {"x": 300, "y": 100}
    assert len(state.finish) <= 2


def test_a_clock_that_skips_a_lone_tenants_starts_picks_as_one_that_writes_every_start() -> None:
    """Starts that only shift the clock (:meth:`FairState.only_shifted_by`, not written by a replica) change
    no decision: over long stretches of one tenant alone and of several with work, with unequal weights
    that change now and then, a clock charged only when a start does more than shift it picks exactly as
    one charged every time. The weights' inverses are exact in binary, so a tie is a tie on both clocks
    (with a weight of 3, two tags equal in exact arithmetic differ by rounding, either way on either clock)."""
    rng = random.Random(34)
    weights = {"x": 4.0, "y": 1.0, "z": 0.5}
    every, lean, skipped = FairState(), FairState(), 0
    for stretch in range(1000):
        if stretch % 3 == 2:
            weights[rng.choice(sorted(weights))] = rng.choice([0.5, 1.0, 2.0, 4.0])
        with_work = rng.sample(sorted(weights), k=rng.choice([1, 1, 2, 3]))
        queues = {t: [Candidate(f"{t}{stretch}", t, 5, float(stretch))] for t in with_work}
        for _ in range(rng.randint(1, 12)):
            chosen = pick(queues, every, weights, 60.0)
            assert chosen is not None
            assert chosen == pick(queues, lean, weights, 60.0)
            every = every.charged(chosen.tenant, weights[chosen.tenant])
            if lean.only_shifted_by(chosen.tenant, weights[chosen.tenant]):
                skipped += 1
            else:
                lean = lean.charged(chosen.tenant, weights[chosen.tenant])
    assert skipped > 1000, "lone stretches were skipped"
