"""The replica's consumers on JetStream, made in the order an upgrade needs.

Every one a durable pull consumer shared by all replicas, with an explicit ack policy, read by a
nats-py pull loop on the replica's one watched connection (:mod:`services.dispatcher.subscribers`):

* ``dispatcher-fold-{p}`` on JOBS' slots ``jobs.*.*.*.{slot}`` of partition ``p``, one per partition of
  the job events by job id (:mod:`services.dispatcher.fold.partitions`): folds each event into KV ``jobs`` and reacts
  (:mod:`services.dispatcher.fold.reactions`). Each partition is pinned to one replica at a time, which
  folds a batch of up to ``fold_batch`` events (:mod:`services.dispatcher.fold.serial`), so each
  job's record is folded in stream order by one writer and KV equals
  :func:`~services.dispatcher.fold.records.fold` of the stream, while partitions fold in parallel.
  ``fold_partitions=0``: the serial ``dispatcher-jobs`` on ``jobs.>`` (JOBS) instead, one event
  in flight (``max_ack_pending=1``).
* ``dispatcher-uploads`` on ``uploads.>`` (JOBS): releases jobs waiting on the upload (one event at a
  time, as the serial fold: :class:`~services.dispatcher.fold.serial.EventConsumer`).
* ``dispatch-{kind}`` on ``dispatch.{kind}`` (DISPATCH), one per routed kind, ``max_ack_pending`` =
  the route's concurrency (:mod:`services.dispatcher.running.tickets`):
  :class:`~services.dispatcher.running.attempts.Attempts` holds each ticket until its attempt ends: the ack
  *is* the release of the concurrency slot.

Every handler runs through :class:`~services.dispatcher.consumers.ConsumerGuard` (``MANUAL`` ack
policy): a failure is logged and redelivered at most ``event_max_deliver`` (``ticket_max_deliver``)
times, then dead-lettered, so a poison message never wedges a consumer. Each step of making them is
asked again while JetStream answers late (:func:`~services.common.nats.publish.until_answered`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from contracts import streams
from contracts.route_table import Route
from services.common.nats.publish import until_answered
from services.dispatcher.consumers import ConsumerGuard
from services.dispatcher.fold.partition import PartitionFold, fold_consumers
from services.dispatcher.fold.partitions import partitions_made, retire_fold_copy, retire_other_partitions
from services.dispatcher.fold.reactions import Reactions
from services.dispatcher.fold.serial import EventConsumer
from services.dispatcher.running.tickets import OnTicket, TicketConsumer
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.subscribers import Consumer


@dataclass(frozen=True)
class ReplicaConsumers:
    """The fold's consumers (its partitions, or the serial one), the uploads' and each routed kind's tickets."""

    folds: list[EventConsumer] | list[PartitionFold]
    uploads: EventConsumer
    takers: list[TicketConsumer]

    @property
    def consumers(self) -> list[Consumer]:
        """Each one's stream, durable and redelivery policy (for their bounds, advisories and lag)."""
        return [*(fold.consumer for fold in self.folds), self.uploads.consumer, *(t.consumer for t in self.takers)]

    def run(self) -> list[asyncio.Task[None]]:
        """Each one's pull loop, a task named after its durable."""
        return [
            *(asyncio.create_task(fold.run(), name=fold.durable) for fold in self.folds),
            asyncio.create_task(self.uploads.run(), name=self.uploads.durable),
            *(asyncio.create_task(taker.run(), name=taker.durable) for taker in self.takers),
        ]


async def start_consumers(
    nc: NatsClient,
    js: JetStreamContext,
    settings: DispatcherSettings,
    guard: ConsumerGuard,
    reactions: Reactions,
    routes: dict[str, Route],
    dispatch_stream: str,
    on_ticket: OnTicket,
    unavailable: Callable[[], None],
    refold_later: Callable[[str, str], Awaitable[None]],
) -> ReplicaConsumers:
    """Make (or bind) the uploads' consumer, the fold's and each kind's tickets', in that order, retiring
    what the fold read before; each told of ``unavailable`` NATS, the fold's partitions ``refold_later``."""
    s, ns = settings, settings.ns
    made = await until_answered(lambda: partitions_made(nc, ns), "list the fold's consumers")
    folds = await fold_consumers(nc, s, guard, reactions, made, unavailable, refold_later)
    uploads = EventConsumer(js, s, guard, ns.stream(streams.JOBS), ns.subject("uploads.>"), "dispatcher-uploads",
                            reactions.on_upload_completed, unavailable)  # fmt: skip
    takers = [TicketConsumer(js, s, guard, dispatch_stream, kind, route.concurrency, on_ticket, unavailable)
              for kind, route in routes.items()]  # fmt: skip
    await until_answered(uploads.start, "make the uploads consumer")  # each step asked again while JetStream
    for fold in folds:  # answers late: a loaded cluster left one unanswered, and the start failed
        await until_answered(fold.start, f"make {fold.consumer.durable}")
    if s.fold_partitions:  # an upgrade: the partitions' consumers on JOBS start after what it held
        await until_answered(lambda: retire_fold_copy(js, ns), "retire the fold's copy of JOBS")
    await until_answered(lambda: retire_other_partitions(js, ns, s.fold_partitions, made), "retire old partitions")
    for taker in takers:
        await until_answered(taker.start, f"make {taker.consumer.durable}")
    return ReplicaConsumers(folds, uploads, takers)
