"""Leases hand their key back when their work ends, even when a renewal's reply meets the stop.

On Python 3.11 nats-py waits for a reply with ``asyncio.wait_for``, which returns the reply and drops
a cancel that arrives with it: a renewal that goes on after that would hold the lease (and keep the
work's ``run`` from returning) for ever. The KV here swallows the cancel the same way, at the moment
the work ends, so the race is hit every time instead of once in a few hundred loaded runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.subjects import Namespace
from services.common.nats.connection import cancel_and_wait
from services.notifier.webhooks.leases import Leases, open_leases

TTL_S = 0.6


class CancelSwallowingKv:
    """KV whose compare-and-set (:func:`~services.common.nats.kv_writes.kv_update`'s publish on its JetStream
    context) keeps going when cancelled mid-way (as 3.11's ``wait_for`` may)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._js = self  # kv_update publishes here; every other call goes to the real bucket
        self.updating = asyncio.Event()
        self.swallowed = 0

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        self.updating.set()
        try:
            await asyncio.sleep(TTL_S / 6)  # the reply on its way
        except asyncio.CancelledError:
            self.swallowed += 1  # the reply came with the cancel: the reply wins
        return await self.kv._js.publish(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


async def test_work_that_ends_during_a_renewal_hands_its_lease_back(js: JetStreamContext, namespace: Namespace) -> None:
    real = await open_leases(js, namespace, TTL_S)
    kv = CancelSwallowingKv(real.kv)
    leases = Leases(kv, TTL_S)  # type: ignore[arg-type]

    async def work() -> None:
        await kv.updating.wait()  # ends while the lease is being renewed

    await asyncio.wait_for(leases.run("delivery.x", work), timeout=5 * TTL_S)
    assert kv.swallowed == 1, "the stop met the renewal, and the renewal swallowed it"
    try:
        entry = await real.kv.get("delivery.x")
    except KeyNotFoundError:
        entry = None
    assert entry is None or entry.value != leases.owner, "the lease was handed back"


async def test_a_bucket_made_with_another_ttl_gets_the_configured_one(
    js: JetStreamContext, namespace: Namespace
) -> None:
    old = await open_leases(js, namespace, 5.0)  # an older notifier's: renewed every 1.7 s
    assert (await old.kv.status()).ttl == 5.0
    leases = await open_leases(js, namespace, 15.0)  # renewed every 5 s: a 5 s TTL would expire it
    status = await leases.kv.status()
    assert status.ttl == 15.0
    assert (status.stream_info.config.duplicate_window or 0) <= 15.0
    await open_leases(js, namespace, 15.0)  # the same TTL: nothing to change
    assert (await leases.kv.status()).ttl == 15.0


async def test_a_renewal_that_landed_unanswered_keeps_the_lease_and_its_work(
    js: JetStreamContext, namespace: Namespace
) -> None:
    """A renewal that timed out and was stored all the same leaves the holder on an old revision, so
    the next renewal is refused. The lease still holds the holder's own value: the holder goes on, its
    work never stopped (it stopped it, and got the lease back only once the TTL ran out)."""
    ttl_s = 10.0  # renewals 3.3 s apart: with a 3 s TTL, a fresh clone's load once left one unanswered past it
    leases = await open_leases(js, namespace, ttl_s)
    started, holding, done = 0, asyncio.Event(), asyncio.Event()

    async def work() -> None:
        nonlocal started
        started += 1
        holding.set()
        await done.wait()

    run = asyncio.create_task(leases.run("fanout", work))
    await asyncio.wait_for(holding.wait(), timeout=5 * ttl_s)
    landed = await leases.kv.put("fanout", leases.owner)  # what the unanswered renewal stored

    async def renewed() -> bool:  # the holder's next renewal, on the revision it read back (or a new create)
        return (await leases.kv.get("fanout")).revision != landed

    await wait_for(renewed, timeout_s=5 * ttl_s, what="the next renewal", every_s=ttl_s / 10)
    done.set()
    await asyncio.wait_for(run, timeout=5 * ttl_s)
    assert started == 1, "the work went on under the lease it still held"


async def test_a_lease_whose_create_landed_unanswered_is_taken_as_it_stands(
    js: JetStreamContext, namespace: Namespace
) -> None:
    """A create that timed out and was stored all the same: the next try is refused (the key exists),
    and the key holds the replica's own value, so the lease is its own, renewed at once from that
    revision (it waited for the TTL to run out, and created the lease again). The renewal is what its
    TTL counts from: when the landed write was stored is not known."""
    leases = await open_leases(js, namespace, 3.0)
    landed = await leases.kv.put("fanout", leases.owner)  # what the unanswered create stored
    seen: list[int | None] = []

    async def work() -> None:  # runs as the lease is acquired; the first renewal is a second later
        seen.append((await leases.kv.get("fanout")).revision)

    await asyncio.wait_for(leases.run("fanout", work), timeout=10.0)
    assert seen == [landed + 1]  # the renewal of the landed write: the bucket's next message


class LateCreates:
    """A lease bucket whose creates are stored at once and answered ``late_s`` later (a leader slow to
    reply); its other calls go to the real bucket."""

    def __init__(self, kv: KeyValue, late_s: float) -> None:
        self.kv, self.late_s = kv, late_s

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        revision = await self.kv.create(*args, **kwargs)
        await asyncio.sleep(self.late_s)
        return revision

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


async def test_a_lease_whose_create_is_answered_late_is_renewed_before_its_work_starts(
    js: JetStreamContext, namespace: Namespace
) -> None:
    """The create's answer comes after the holder's bound (0.9 of the TTL after the send): its key may
    expire any moment. Before, the work started and the first renewal stopped it at once ("unconfirmed");
    now the lease is renewed first and the work starts once, on the renewal's revision, and goes on."""
    ttl_s = 3.0
    real = await open_leases(js, namespace, ttl_s)
    leases = Leases(LateCreates(real.kv, 0.95 * ttl_s), ttl_s)  # type: ignore[arg-type]
    log: list[str] = []
    seen: list[int | None] = []

    async def work() -> None:
        log.append("starts")
        seen.append((await real.kv.get("fanout")).revision)
        try:
            await asyncio.Event().wait()
        finally:
            log.append("stops")

    run = asyncio.create_task(leases.run("fanout", work))
    try:
        await wait_for(lambda: bool(seen), timeout_s=5 * ttl_s, what="the work")
        await asyncio.sleep(2 * ttl_s)  # two TTLs of renewals
        assert log == ["starts"]
    finally:
        await cancel_and_wait([run])
    assert seen == [2]  # the create's revision 1, renewed as 2 before the work started


class CutOff:
    """A lease bucket whose writes and reads time out while ``failing`` (after ``timeout_s``, as nats-py's
    request time-out), as from a replica cut off from the bucket's leader (a compare-and-set and a read
    from the leader go through its JetStream context, here; a create is its own call); its other calls go
    to the real bucket and its JetStream context."""

    def __init__(self, kv: KeyValue, timeout_s: float = 0.0) -> None:
        self.kv, self.failing, self.timeout_s = kv, False, timeout_s
        self._js = self

    async def _reach(self) -> None:
        if self.failing:
            await asyncio.sleep(self.timeout_s)
            raise TimeoutError("nats: timeout")

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        await self._reach()
        return await self.kv._js.publish(*args, **kwargs)

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        await self._reach()
        return await self.kv.create(*args, **kwargs)

    async def get_last_msg(self, *args: Any, **kwargs: Any) -> Any:
        await self._reach()
        return await self.kv._js.get_last_msg(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name) if hasattr(self.kv, name) else getattr(self.kv._js, name)


@pytest.mark.parametrize("request_timeout_s", [0.0, 5.0])
async def test_a_holder_whose_renewals_go_unanswered_stops_before_another_can_take_over(
    js: JetStreamContext, namespace: Namespace, request_timeout_s: float
) -> None:
    """The work stops before the key may expire, so the replica that takes the lease after it never runs
    the work at the same time: before, the cut-off holder worked on until a renewal was refused. Each
    renewal fails at once, or only after nats-py's 5 s request time-out, longer than the TTL (the holder
    worked on until then)."""
    ttl_s = 3.0  # a renewal every second
    real = await open_leases(js, namespace, ttl_s)
    cut_off = CutOff(real.kv, request_timeout_s)
    first, second = Leases(cut_off, ttl_s), Leases(real.kv, ttl_s)  # type: ignore[arg-type]
    log: list[str] = []
    holding = asyncio.Event()

    def work_of(replica: str) -> Callable[[], Awaitable[None]]:
        async def work() -> None:
            log.append(f"{replica} starts")
            holding.set()
            try:
                await asyncio.Event().wait()
            finally:
                log.append(f"{replica} stops")

        return work

    runs = [asyncio.create_task(first.run("fanout", work_of("first")))]
    try:
        await asyncio.wait_for(holding.wait(), timeout=5 * ttl_s)
        cut_off.failing = True
        runs.append(asyncio.create_task(second.run("fanout", work_of("second"))))
        await wait_for(lambda: "second starts" in log, timeout_s=10 * ttl_s, what="the second replica's work")
    finally:
        await cancel_and_wait(runs)
    assert log[:3] == ["first starts", "first stops", "second starts"]
