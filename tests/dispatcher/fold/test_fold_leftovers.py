"""A new pin holder folds nothing until every event the last holder left unacknowledged came to it (or
the last holder's acks landed): folding before that folded a job's events out of order (CI, after a
15 s nats-server pause: a job.dispatched came 2 s into the new pin, after its job.started was folded,
and KV never held what it said)."""

from __future__ import annotations

import asyncio
import functools
from types import SimpleNamespace
from typing import Any, cast

import pytest
from nats.aio.msg import Msg

from services.dispatcher.fold import handover, partition_pulls
from services.dispatcher.fold.partition_pulls import PartitionPulls
from services.dispatcher.fold.pinned.consumer import ConsumerUnavailable

pytestmark = pytest.mark.timeout(60)


class SlowLeftovers:
    """A puller whose pulls each wait their whole time and bring nothing, but the ``late``-th brings the
    straggler (redelivered once the last holder let it go)."""

    def __init__(self, late: int) -> None:
        self.late, self.pulls = late, 0
        self.straggler = cast(Msg, object())

    async def batch(self, size: int, wait_s: float, more: bool = True) -> list[Msg]:
        self.pulls += 1
        if self.pulls == self.late:
            return [self.straggler]
        await asyncio.sleep(wait_s)
        return []


def holder(counts: list[int], puller: SlowLeftovers) -> Any:
    """A partition's new holder whose consumer counts ``counts`` unacknowledged events, one look after another
    (the last count stays)."""
    looks = iter(counts)
    last = [counts[0]]

    async def unacknowledged() -> int:
        last[0] = next(looks, last[0])
        return last[0]

    return new_holder(unacknowledged, ack_wait_s=30.0, puller=puller)


def new_holder(unacknowledged: Any, ack_wait_s: float, puller: SlowLeftovers) -> Any:
    """A partition's new holder: its consumer count, its settings and its pulls (``puller``'s, as
    :meth:`PartitionPulls.pull` makes them)."""

    async def pull(more: bool, size: int | None = None, wait_s: float = 1.0) -> list[Msg]:
        return list(await puller.batch(size or 512, wait_s, more))

    settings = SimpleNamespace(event_ack_wait_s=ack_wait_s, fold_batch=512)
    return SimpleNamespace(
        settings=settings, durable="dispatcher-fold-2", unacknowledged=unacknowledged, pull=pull,
        unavailable=lambda: None, puller=puller,
    )  # fmt: skip


async def test_a_straggler_that_comes_after_the_first_wait_is_folded_with_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handover, "LEFTOVERS_WAIT_S", 0.2)
    puller = SlowLeftovers(late=3)  # two waits of LEFTOVERS_WAIT_S pass before it comes
    more = await PartitionPulls.leftovers(holder([2], puller), held=1)
    assert more == [puller.straggler]


async def test_acks_of_the_last_holder_that_land_meanwhile_end_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handover, "LEFTOVERS_WAIT_S", 0.2)
    puller = SlowLeftovers(late=10_000)  # nothing comes: the second event was acknowledged after all
    more = await PartitionPulls.leftovers(holder([2, 2, 1], puller), held=1)
    assert more == []
    assert puller.pulls == 2  # counted again after each wait; not until the pin's time-out (32 s)


async def test_a_count_the_server_does_not_answer_yet_does_not_end_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI (netfaults, a node and a dispatcher paused 15 s): the resumed dispatcher pinned a partition again
    as the node came back, its count of unacknowledged events went unanswered, and it folded what was new
    without the event it had left unacknowledged (KV lost what a job.dispatched said). A failed count is
    asked again; until one answers, the new holder reads on."""
    monkeypatch.setattr(handover, "LEFTOVERS_WAIT_S", 0.2)
    looks = iter([RuntimeError("nats: no responders"), RuntimeError("nats: no responders"), 2])

    async def unacknowledged() -> int:
        look = next(looks, 2)
        if isinstance(look, Exception):
            raise look
        return look

    puller = SlowLeftovers(late=3)
    more = await PartitionPulls.leftovers(new_holder(unacknowledged, 30.0, puller), held=1)
    assert more == [puller.straggler]


async def test_with_no_count_at_all_the_new_holder_reads_until_the_pins_time_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handover, "LEFTOVERS_WAIT_S", 0.2)
    monkeypatch.setattr(partition_pulls, "PIN_MARGIN_S", 0.0)

    async def unanswered() -> int:
        raise TimeoutError

    puller = SlowLeftovers(late=4)
    began = asyncio.get_running_loop().time()
    more = await PartitionPulls.leftovers(new_holder(unanswered, 1.5, puller), held=1)
    assert more == [puller.straggler]
    assert asyncio.get_running_loop().time() - began >= 1.5, "read on until the pin's time-out"


class UnavailableFirst(SlowLeftovers):
    """A puller whose first pull finds no consumer answering (503), as a paused node comes back."""

    async def batch(self, size: int, wait_s: float, more: bool = True) -> list[Msg]:
        if self.pulls == 0:
            self.pulls += 1
            raise ConsumerUnavailable("dispatcher-fold-7: no responders (503)")
        return await super().batch(size, wait_s, more)


async def test_a_pull_that_fails_while_gathering_is_waited_out_not_the_partitions_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handover, "LEFTOVERS_WAIT_S", 0.2)
    monkeypatch.setattr(partition_pulls, "UNAVAILABLE_BACKOFF_S", 0.05)
    puller = UnavailableFirst(late=3)
    pulls = holder([2], puller)
    pulls.nc, pulls.pinned = SimpleNamespace(is_closed=False), None
    pulls.pull = functools.partial(PartitionPulls.pull, pulls)  # the real one: a failed pull is waited out
    more = await PartitionPulls.leftovers(pulls, held=1)
    assert more == [puller.straggler]


class RefusedAtOnce(SlowLeftovers):
    """A puller whose every pull ends at once with nothing (another client's pin: its 423 comes straight back)."""

    async def batch(self, size: int, wait_s: float, more: bool = True) -> list[Msg]:
        self.pulls += 1
        return []


async def test_pulls_that_end_at_once_with_no_count_do_not_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handover, "LEFTOVERS_WAIT_S", 0.2)
    monkeypatch.setattr(partition_pulls, "PIN_MARGIN_S", 0.0)
    asks = 0

    async def unanswered() -> int:
        nonlocal asks
        asks += 1
        raise TimeoutError

    puller = RefusedAtOnce(late=0)
    assert await PartitionPulls.leftovers(new_holder(unanswered, 1.0, puller), held=1) == []
    assert asks <= 7, f"{asks} counts in 1 s of 0.2 s rounds: the loop spun"
