"""A partition's pin changing hands: what a new holder gathers first, and a dead holder's pin freed.

**Leftovers.** A replica that dies holding a batch keeps the pin until its events are due for
redelivery (the pin's time-out: ``event_ack_wait_s`` + 2 s), so the next holder gets them before
anything newer, in no particular order: it gathers every unacknowledged event before it folds
(:func:`gather_leftovers`), unless its first deliveries come right after its own last ones
(:func:`next_after_let_go`: no one was delivered anything since).

**A dead pin.** A stopped or killed replica leaves its quiet partitions' 30 s pulls on the server (it drops a dead
connection's request only when it next looks at its waiting requests: a new request, an expiry). An
event that comes while no live replica has a request waiting is pinned to such a request, which the
server then finds without interest and drops undelivered: the partition stays pinned to no one, its
event pending, until the pin's timeout (``event_ack_wait_s`` + 2 s; 32 s in production). That is a
single dispatcher restarted while idle with a job created meanwhile. So a starting replica looks at
each partition: pinned, nothing unacknowledged, something pending and still nothing delivered a
live holder's pull later is a holder that is not pulling, with nothing of its pin in flight; it is
unpinned as its timeout would (the events are folded in order all the same: none is in flight)
(:func:`unpin_if_dead`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from services.common.nats.connection import log_failure
from services.dispatcher.fold.pinned.consumer import GROUP, PinnedConsumer, jetstream_api
from services.dispatcher.fold.pinned.pull import delivery_seq, first_deliveries

log = logging.getLogger(__name__)
LEFTOVERS_WAIT_S = 2.0
"""How long a new holder waits for the unacknowledged events a previous holder left before it counts
them again (for up to the pin's time-out in all)."""


def pinned_client(info: dict[str, Any] | None) -> str | None:
    """The pin id of a consumer info (a fold partition's one priority group; ``None``: pinned to no one)."""
    pin = ((info or {}).get("priority_groups") or [{}])[0].get("pinned_client_id")  # nats-py has no such field
    return str(pin) if pin else None


def _stalled_pin(info: dict[str, Any] | None) -> tuple[str, int] | None:
    """The pin id and the last delivered stream sequence when the consumer is pinned with events
    pending and none unacknowledged (a holder that has asked for nothing since they came)."""
    if info is None:
        return None
    pin = pinned_client(info)
    if not pin or info.get("num_ack_pending") or not info.get("num_pending"):
        return None
    return pin, int(info.get("delivered", {}).get("stream_seq", 0))


def _settled_delivery(info: dict[str, Any] | None) -> int | None:
    """The consumer sequence of the last delivery when every delivered event is acknowledged."""
    if info is None or info.get("num_ack_pending"):
        return None
    return int(info.get("delivered", {}).get("consumer_seq", 0))


async def unpin_if_dead(nc: NatsClient, consumer: PinnedConsumer, look_again_s: float) -> int | None:
    """Unpin ``consumer`` when it looks stalled now and again ``look_again_s`` later (more than a live
    holder's pull lasts) with the same pin and nothing delivered. Returns the consumer sequence of the
    last delivery when the first look found every delivered event acknowledged (``None`` otherwise):
    a starting replica whose first deliveries follow it has no holder's leftovers to gather."""
    info_verb = f"CONSUMER.INFO.{consumer.stream}.{consumer.durable}"
    info = await jetstream_api(nc, info_verb, None, missing_ok=True)
    settled, first = _settled_delivery(info), _stalled_pin(info)
    if first is None:
        return settled
    await asyncio.sleep(look_again_s)
    if _stalled_pin(await jetstream_api(nc, info_verb, None, missing_ok=True)) != first:
        return None
    await jetstream_api(nc, f"CONSUMER.UNPIN.{consumer.stream}.{consumer.durable}", {"group": GROUP})
    log.warning("%s: pinned to a client that pulls nothing (a replica gone); unpinned", consumer.durable)
    return settled


def next_after_let_go(let_go_at: int | None, msgs: list[Msg]) -> bool:
    """Whether ``msgs``, at a new pin, are the first deliveries since this replica let go of the pin
    (at the consumer sequence ``let_go_at``) with every event it had acknowledged (confirmed): then no
    one else was delivered anything meanwhile, so no holder left events unacknowledged, and
    :func:`gather_leftovers` need not count them (a request and its reply per pin, issue 34)."""
    return let_go_at is not None and bool(msgs) and delivery_seq(msgs[0]) == let_go_at + 1 and first_deliveries(msgs)


async def gather_leftovers(
    durable: str,
    held: int,
    within_s: float,
    count: Callable[[], Awaitable[int]],
    pull: Callable[[float], Awaitable[list[Msg]]],
) -> list[Msg]:
    """At a new pin holding ``held`` events: every event still unacknowledged (a holder that died left
    them, and the server redelivers them in no particular order), so they are folded together, in
    stream order, before anything newer. Read (``pull`` for up to a number of seconds) until this
    replica holds as many as the consumer ``count``s, counted again every :data:`LEFTOVERS_WAIT_S`
    (the last holder's acks may still be landing), for up to ``within_s`` (the pin's time-out): by
    then the server has redelivered each of them. Folding before they all came folded a job's events
    out of order (after a 15 s pause: its job.dispatched after its job.started, so KV lost what
    job.dispatched said). A count that fails (the server not answering yet, as a paused node comes
    back) is asked again each round, and until one answers every round reads on: without a count,
    only the pin's time-out says they all came."""
    more: list[Msg] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    pending: int | None = None
    while True:
        try:
            pending = await count()
        except Exception as exc:  # noqa: BLE001 - the last count stands; with none yet, read on until the time-out
            log_failure(log, exc, "%s: could not count the unacknowledged events at a new pin", durable)
        if (pending is not None and held + len(more) >= pending) or loop.time() >= deadline:
            break
        round_end = min(loop.time() + LEFTOVERS_WAIT_S, deadline)
        got = await pull(round_end - loop.time())
        more += got
        if not got:  # a pull that ends at once (another's pin, a failure) waits out its round: no spin
            await asyncio.sleep(max(0.0, round_end - loop.time()))
    if pending is None or held + len(more) < pending:
        log.warning("%s: %d of %s unacknowledged events came at a new pin", durable, held + len(more), pending)
    return more
