"""A lease holder's stop ends promptly: a release NATS does not answer is left to the TTL, and a stop
that meets the reply of the write taking the lease is not swallowed (the holder would run its work
until a second cancel, 15 s later, past a notifier's stop grace)."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.subjects import Namespace
from services.notifier.webhooks.leases import RELEASE_S, Leases, open_leases

TTL_S = 0.6


class UnansweredReadsKv:
    """KV whose reads are never answered (a server that stopped answering as the holder stops)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._js = kv._js

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


async def test_a_stopped_holder_whose_release_goes_unanswered_leaves_the_lease_to_its_ttl(
    js: JetStreamContext, namespace: Namespace
) -> None:
    """The stop gives up the release after :data:`RELEASE_S` (before, it waited for every KV request's
    own time-out, and here for ever); the lease then expires within the TTL and another replica takes it."""
    real = await open_leases(js, namespace, TTL_S)
    holder, taker = Leases(UnansweredReadsKv(real.kv), TTL_S), Leases(real.kv, TTL_S)  # type: ignore[arg-type]
    holding, taken = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        holding.set()
        await asyncio.Event().wait()

    async def take() -> None:
        taken.set()

    run = asyncio.create_task(holder.run("delivery.y", hold))
    await asyncio.wait_for(holding.wait(), timeout=5 * TTL_S)
    run.cancel()
    await asyncio.wait_for(asyncio.gather(run, return_exceptions=True), timeout=RELEASE_S + 10 * TTL_S)
    await asyncio.wait_for(taker.run("delivery.y", take), timeout=10 * TTL_S)
    assert taken.is_set()


class CreateSwallowingKv:
    """KV whose create keeps going when cancelled mid-way (the reply came with the cancel)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._js = kv._js
        self.creating = asyncio.Event()
        self.swallowed = 0

    async def create(self, key: str, value: bytes) -> int:
        self.creating.set()
        try:
            await asyncio.sleep(TTL_S / 6)
        except asyncio.CancelledError:
            self.swallowed += 1
        return await self.kv.create(key, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


async def test_a_holder_stopped_as_its_lease_is_written_hands_it_back_and_starts_no_work(
    js: JetStreamContext, namespace: Namespace
) -> None:
    """Before, the swallowed stop left the holder running its work until a second cancel (15 s later)."""
    real = await open_leases(js, namespace, TTL_S)
    kv = CreateSwallowingKv(real.kv)
    leases = Leases(kv, TTL_S)  # type: ignore[arg-type]
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.Event().wait()

    run = asyncio.create_task(leases.run("delivery.z", work))
    await asyncio.wait_for(kv.creating.wait(), timeout=5 * TTL_S)
    run.cancel()
    await asyncio.wait_for(asyncio.gather(run, return_exceptions=True), timeout=RELEASE_S + 5 * TTL_S)
    assert (kv.swallowed, started.is_set()) == (1, False)
    try:
        entry = await real.kv.get("delivery.z")
    except KeyNotFoundError:
        entry = None
    assert entry is None or entry.value != leases.owner, "the lease was handed back"
