"""A partition pinned to a replica that is gone, found and unpinned when a replica starts.

A stopped or killed replica leaves its quiet partitions' 30 s pulls on the server (it drops a dead
connection's request only when it next looks at its waiting requests: a new request, an expiry). An
event that comes while no live replica has a request waiting is pinned to such a request, which the
server then finds without interest and drops undelivered: the partition stays pinned to no one, its
event pending, until the pin's timeout (``event_ack_wait_s`` + 2 s; 32 s in production). That is a
single dispatcher restarted while idle with a job created meanwhile. So a starting replica looks at
each partition: pinned, nothing unacknowledged, something pending and still nothing delivered a
live holder's pull later is a holder that is not pulling, with nothing of its pin in flight; it is
unpinned as its timeout would (the events are folded in order all the same: none is in flight).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.aio.client import Client as NatsClient

from services.dispatcher.fold.pinned_pull import GROUP, PinnedConsumer, jetstream_api

log = logging.getLogger(__name__)


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
