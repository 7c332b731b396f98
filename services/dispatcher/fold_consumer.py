"""The fold's consumers: one per partition of ``JOBS_FOLD``, or the serial ``dispatcher-jobs``.

* :class:`PartitionFold` (the default): each partition's durable consumer is pinned to one replica
  at a time (:mod:`~services.dispatcher.pinned_pull`), which pulls up to ``fold_batch`` events,
  folds them (:mod:`~services.dispatcher.fold_batch`: per job in order, one KV write per job and
  batch), acks them all and unpins, so the next batch goes to whichever replica asks first. A
  replica that dies holding a batch keeps the pin until its events are due for redelivery
  (``event_ack_wait_s`` + 2 s), so the next holder gets them before anything newer.
* :class:`FoldConsumer`, the serial fold (``fold_partitions = 0``): one event in flight
  (``max_ack_pending=1``) across every replica, each event guarded like every dispatcher consumer
  (:class:`~services.dispatcher.consumers.ConsumerGuard`: ack, nak with a delay, dead letter after
  ``event_max_deliver``).

Both read nats-py directly rather than through FastStream: the per-message overhead is the fold's
ceiling, and FastStream's (dependency injection, a worker-thread hop per decode) was more than half
of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts import streams
from services.common.config import DispatcherSettings
from services.common.metric_labels import subject_event_label
from services.common.metrics import EVENTS_CONSUMED
from services.common.nats import cancel_requested
from services.common.tracing import consumer_span
from services.dispatcher.consumers import ConsumerGuard, Redelivery
from services.dispatcher.fold_batch import BatchFold
from services.dispatcher.partitions import SERIAL_DURABLE, declare_fold_stream, fold_durable, partition_subject
from services.dispatcher.pinned_pull import PinnedConsumer, PinnedPull
from services.dispatcher.reactions import Reactions
from services.dispatcher.subscribers import Consumer

log = logging.getLogger(__name__)
FETCH_WAIT_S = 1.0
"""A pull's wait: also how long a stop may wait for it (nats-py's fetch can hold a cancel until then)."""
PIN_MARGIN_S = 2.0
"""The pin outlasts the ack wait by this much (a dead holder's events are due before the pin moves)."""
STOP_GRACE_S = 5.0
"""How long a stop lets a partition finish the batch in hand (fold, ack, unpin)."""
FOLD_LABEL = "dispatcher-fold"
"""The ``consumer`` label and span name prefix of every partition's fold (the partitions share them)."""
Fold = Callable[[bytes], Awaitable[object]]


class _FoldDurable:
    """What every fold consumer tells the service: its redelivery policy and its :class:`Consumer`."""

    settings: DispatcherSettings
    stream: str
    durable: str

    @property
    def policy(self) -> Redelivery:
        """The redelivery policy of every event consumer."""
        s = self.settings
        return Redelivery(s.event_max_deliver, s.event_retry_delay_s, s.event_ack_wait_s, s.event_ack_wait_s)

    @property
    def consumer(self) -> Consumer:
        """What :func:`~services.dispatcher.subscribers.bound_and_watch` and the metrics need."""
        return Consumer(self.stream, self.durable, self.policy)


@dataclass
class FoldConsumer(_FoldDurable):
    """One fold consumer: ``durable`` on ``subject`` of ``stream``, folding with ``handler``."""

    js: JetStreamContext
    settings: DispatcherSettings
    guard: ConsumerGuard
    stream: str
    subject: str
    durable: str
    handler: Fold
    _psub: JetStreamContext.PullSubscription | None = None

    async def start(self) -> None:
        """Create (or bind) the durable consumer."""
        config = ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self.subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.event_ack_wait_s,
            max_deliver=self.policy.max_deliver,
            max_ack_pending=1,
        )
        self._psub = await self.js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream, config=config)

    async def run(self) -> None:
        """Fold forever (cancel to stop: an event being folded is redelivered, folding it again is harmless)."""
        psub = self._psub
        assert psub is not None, "start() first"
        try:
            while True:
                for msg in await self._fetch(psub):
                    await self.handle(msg)
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()  # else the connection's drain waits for it

    async def _fetch(self, psub: JetStreamContext.PullSubscription) -> list[Msg]:
        try:
            return await psub.fetch(1, timeout=FETCH_WAIT_S)
        except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
            if cancel_requested():  # nats-py's fetch can turn a cancel into its timeout (hence a short wait)
                raise asyncio.CancelledError from None
            return []
        except asyncio.CancelledError:
            raise
        except Exception:  # a broken pull must not end the fold for good
            log.exception("%s: fetch failed; retrying", self.durable)
            await asyncio.sleep(0.5)
            return []

    @property
    def label(self) -> str:
        """Its name in metrics and spans: ``dispatcher-fold`` for every partition, else its durable's."""
        return FOLD_LABEL if self.durable.startswith(FOLD_LABEL) else self.durable

    async def handle(self, msg: Msg) -> None:
        """Fold one event, guarded, counted and traced."""
        event_type = subject_event_label(msg.subject)
        EVENTS_CONSUMED.labels(self.label, event_type).inc()
        attributes = {"messaging.destination.name": msg.subject, "messaging.consumer.group.name": self.durable}
        with consumer_span(f"{self.label} {event_type}", msg.headers, **attributes):
            await self.guard.run(self.durable, msg, lambda: self.handler(msg.data), self.policy, ack=True)


@dataclass
class PartitionFold(_FoldDurable):
    """One partition of ``JOBS_FOLD``, folded a batch at a time while this replica holds its pin."""

    nc: NatsClient
    settings: DispatcherSettings
    guard: ConsumerGuard
    reactions: Reactions
    stream: str
    partition: int
    durable: str = field(init=False)
    _puller: PinnedPull | None = None

    def __post_init__(self) -> None:
        self.durable = fold_durable(self.partition)

    async def start(self) -> None:
        """Create (or re-make) the pinned consumer and open this replica's inbox for it."""
        s = self.settings
        pinned = PinnedConsumer(
            self.stream, self.durable, partition_subject(s.ns, self.partition), ack_wait_s=s.event_ack_wait_s,
            max_deliver=s.event_max_deliver, max_ack_pending=s.fold_batch,
            pin_timeout_s=s.event_ack_wait_s + PIN_MARGIN_S,
        )  # fmt: skip
        await pinned.ensure(self.nc)
        self._puller = PinnedPull(self.nc, pinned)
        await self._puller.start()

    async def run(self) -> None:
        """Fold batches forever; a cancel lets the batch in hand finish first (for up to :data:`STOP_GRACE_S`)."""
        puller = self._puller
        assert puller is not None, "start() first"
        folder = BatchFold(self.reactions, self.guard, self.policy, self.durable, FOLD_LABEL)
        try:
            while True:
                try:
                    msgs = await puller.batch(self.settings.fold_batch, FETCH_WAIT_S)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a broken pull must not end the fold for good
                    if cancel_requested():  # nats-py turns a cancel on a closed connection into an error
                        raise asyncio.CancelledError from None
                    if self.nc.is_closed:
                        return
                    log.exception("%s: pull failed; retrying", self.durable)
                    await asyncio.sleep(0.5)
                    continue
                if msgs:
                    done = asyncio.ensure_future(self._complete(folder, puller, msgs))
                    try:
                        await asyncio.shield(done)
                    except asyncio.CancelledError:
                        with contextlib.suppress(Exception, asyncio.CancelledError):
                            await asyncio.wait_for(done, STOP_GRACE_S)  # past it, redelivered after the ack wait
                        raise
                    except Exception:  # never let a partition's fold end
                        log.exception("%s: a batch failed", self.durable)
        finally:
            await puller.close()

    async def _complete(self, folder: BatchFold, puller: PinnedPull, msgs: list[Msg]) -> None:
        """Fold ``msgs`` and ack them, then unpin. Folding is cut off at 80 % of the ack wait (before
        anyone else could be given these events); on any failure the batch is nak'ed so the next pull
        (still pinned here) gets it again before anything newer, and when the server's answer to the
        acks or naks is unknown this replica stops pulling for the pin's timeout: by then the events
        are due for redelivery, and redeliveries come before newer events, whoever pulls."""
        ack_wait = self.settings.event_ack_wait_s
        deadline = time.monotonic() + 0.8 * ack_wait
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + 0.8 * ack_wait):
                await folder.fold(msgs, deadline)
            await self._settle(msgs, b"+ACK")
        except Exception:
            log.exception("%s: a batch of %d events is given back to be redelivered", self.durable, len(msgs))
            try:
                await self._settle(msgs, b"-NAK")
            except Exception:  # noqa: BLE001 - unknown: wait until they are due for redelivery anyway
                log.warning("%s: the server did not confirm the nak; pulling again in %g s", self.durable, ack_wait)
                await asyncio.sleep(ack_wait + PIN_MARGIN_S)
            return
        await puller.unpin()

    async def _settle(self, msgs: list[Msg], verb: bytes) -> None:
        """Ack (``+ACK``) or nak (``-NAK``) every message, the last as a request: its answer means the
        server has handled them all (a consumer handles its acks in order)."""
        *first, last = msgs
        for msg in first:
            await self.nc.publish(msg.reply, verb)
        await self.nc.request(last.reply, verb, timeout=min(5.0, 0.1 * self.settings.event_ack_wait_s + 0.5))


async def fold_consumers(
    nc: NatsClient, settings: DispatcherSettings, guard: ConsumerGuard, reactions: Reactions
) -> list[FoldConsumer] | list[PartitionFold]:
    """One :class:`PartitionFold` per partition of ``JOBS_FOLD`` (declared here:
    :mod:`~services.dispatcher.partitions`), or the serial ``dispatcher-jobs`` on JOBS' ``jobs.>``
    (one event at a time) when ``fold_partitions`` is 0."""
    s, ns, js = settings, settings.ns, nc.jetstream()
    if not s.fold_partitions:
        serial = FoldConsumer(js, s, guard, ns.stream(streams.JOBS), ns.subject("jobs.>"), SERIAL_DURABLE,
                              reactions.on_job_event)  # fmt: skip
        return [serial]
    stream = await declare_fold_stream(js, ns, s.fold_partitions, s.nats_replicas)
    return [PartitionFold(nc, s, guard, reactions, stream, p) for p in range(s.fold_partitions)]
