"""What the dispatcher's durable pull consumers share: their description, bounds and advisories.

Every consumer is a nats-py pull loop (:mod:`~services.dispatcher.pull_loop`, the fold partitions' own in
:mod:`~services.dispatcher.fold.pinned_pull`) on the replica's one connection, which its stuck-server
watch moves off a server cut off from JetStream. Each is created with an explicit ``max_deliver`` and
acked by hand: the :class:`~services.dispatcher.consumers.ConsumerGuard` acks, naks with a delay, or
dead-letters (:mod:`services.dispatcher.consumers`). :func:`bound_and_watch` brings consumers made before
the setting existed to the same ``max_deliver`` and subscribes to their ``MAX_DELIVERIES`` advisories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient

from services.dispatcher.consumers import ConsumerGuard, Redelivery, bound_redeliveries

TICKET = "dispatch.ticket"
"""The ``type`` label of a dispatch ticket consumed (:mod:`services.dispatcher.running.tickets`)."""


@dataclass(frozen=True, slots=True)
class Consumer:
    """One durable consumer and its redelivery policy."""

    stream: str
    durable: str
    policy: Redelivery


async def bound_and_watch(nc: NatsClient, guard: ConsumerGuard, consumers: list[Consumer]) -> list[Any]:
    """Apply each consumer's ``max_deliver`` (older consumers lack it) and watch its advisories."""
    js, subscriptions = nc.jetstream(), []
    for consumer in consumers:
        await bound_redeliveries(js, consumer.stream, consumer.durable, consumer.policy.max_deliver)
        subscriptions.append(await guard.watch_max_deliveries(nc, consumer.stream, consumer.durable))
    return subscriptions
