"""Leases hand their key back when their work ends, even when a renewal's reply meets the stop.

On Python 3.11 nats-py waits for a reply with ``asyncio.wait_for``, which returns the reply and drops
a cancel that arrives with it: a renewal that goes on after that would hold the lease (and keep the
work's ``run`` from returning) for ever. The KV here swallows the cancel the same way, at the moment
the work ends, so the race is hit every time instead of once in a few hundred loaded runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.subjects import Namespace
from services.notifier.webhooks.leases import Leases, open_leases

TTL_S = 0.6


class CancelSwallowingKv:
    """KV whose compare-and-set (:func:`~services.common.nats.kv.kv_update`'s publish on its JetStream
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
    ttl_s = 3.0  # a renewal every second: a loaded machine's pauses stay far below it
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
    and the key holds the replica's own value, so the lease is its own at that revision (it waited for
    the TTL to run out, and created the lease again)."""
    leases = await open_leases(js, namespace, 3.0)
    landed = await leases.kv.put("fanout", leases.owner)  # what the unanswered create stored
    seen: list[int | None] = []

    async def work() -> None:  # runs as the lease is acquired; the first renewal is a second later
        seen.append((await leases.kv.get("fanout")).revision)

    await asyncio.wait_for(leases.run("fanout", work), timeout=10.0)
    assert seen == [landed]
