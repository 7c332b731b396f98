"""What the dispatcher's durable pull consumers share: their description, bounds and advisories.

Every consumer is a nats-py pull loop (:mod:`~services.dispatcher.pull_loop`, the fold partitions' own in
:mod:`~services.dispatcher.fold.pinned.pull`) on the replica's one connection, which its stuck-server
watch moves off a server cut off from JetStream. Each is created with an explicit ``max_deliver`` and
acked by hand: the :class:`~services.dispatcher.consumers.ConsumerGuard` acks, naks with a delay, or
dead-letters (:mod:`services.dispatcher.consumers`). :func:`bound_and_watch` brings consumers made before
the setting existed to the same ``max_deliver`` and subscribes to their ``MAX_DELIVERIES`` advisories, its
reads and updates tried again while NATS is slow or away, as the start's other steps are.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from services.common.nats.publish import until_answered
from services.dispatcher.consumers import ConsumerGuard, Redelivery, bound_redeliveries

TICKET = "dispatch.ticket"
"""The ``type`` label of a dispatch ticket consumed (:mod:`services.dispatcher.running.tickets`)."""


@dataclass(frozen=True, slots=True)
class Consumer:
    """One durable consumer and its redelivery policy."""

    stream: str
    durable: str
    policy: Redelivery


async def bound_and_watch(
    nc: NatsClient, js: JetStreamContext, guard: ConsumerGuard, consumers: list[Consumer]
) -> list[Any]:
    """Apply each consumer's ``max_deliver`` (older consumers lack it) and watch its advisories. A read
    unanswered under load (a dispatcher's start failed on one in CI) is made again, not the start's end."""
    subscriptions = []
    for consumer in consumers:
        stream, durable = consumer.stream, consumer.durable
        bound = functools.partial(bound_redeliveries, js, stream, durable, consumer.policy.max_deliver)
        await until_answered(bound, f"bound the redeliveries of {durable}")
        subscriptions.append(await guard.watch_max_deliveries(nc, stream, durable))
    return subscriptions
