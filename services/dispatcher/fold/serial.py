"""The serial fold consumer, and what every fold consumer shares.

* :class:`EventConsumer`, the serial fold (``fold_partitions = 0``) and the uploads' completions
  (``dispatcher-uploads``, which release the jobs waiting on them): one event in flight
  (``max_ack_pending=1``) across every replica, each event guarded like every dispatcher consumer
  (:class:`~services.dispatcher.consumers.ConsumerGuard`: ack, nak with a delay, dead letter after
  ``event_max_deliver``), a consumer found gone made again (:mod:`~services.dispatcher.pull_loop`).
* The partitioned fold (the default) is :mod:`~services.dispatcher.fold.partition`, which also makes
  the consumers (:func:`~services.dispatcher.fold.partition.fold_consumers`).

Both read nats-py directly rather than through FastStream: the per-message overhead is the fold's
ceiling, and FastStream's (dependency injection, a worker-thread hop per decode) was more than half
of it. The uploads' completions followed (FastStream's pull loop asked again at once after a 503).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.common.http.nats_failover import unwatched
from services.common.observability.metric_labels import subject_event_label
from services.common.observability.metrics import EVENTS_CONSUMED
from services.common.observability.tracing import consumer_span
from services.dispatcher.consumers import ConsumerGuard, Redelivery, span_attributes
from services.dispatcher.pull_loop import pull_one_at_a_time
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.subscribers import Consumer

log = logging.getLogger(__name__)
FOLD_LABEL = "dispatcher-fold"
"""The ``consumer`` label and span name prefix of every partition's fold (the partitions share them)."""
Handler = Callable[[Msg], Awaitable[object]]
"""Handles one event: its body, and the headers where they tell something (``upload.completed``'s)."""


class FoldDurable:
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
class EventConsumer(FoldDurable):
    """``durable`` on ``subject`` of ``stream``, one event at a time, handled by ``handler``; a refused
    pull tells ``unavailable`` (the replica's stuck-server watch)."""

    js: JetStreamContext
    settings: DispatcherSettings
    guard: ConsumerGuard
    stream: str
    subject: str
    durable: str
    handler: Handler
    unavailable: Callable[[], None] = unwatched
    _psub: JetStreamContext.PullSubscription | None = None
    _settled: int = 0
    """The stream sequence of the last event settled here (handled or dead-lettered; 0: none yet)."""

    async def start(self) -> JetStreamContext.PullSubscription:
        """Create (or bind) the durable consumer; its binding. Made again after it was lost (its pull
        refused), it starts after the last event settled here, not at the stream's first: one event is
        unacknowledged at most, so every event before that one was settled (by whichever replica), and
        those settled elsewhere since come again (the fold and the releases are idempotent). From the
        first, every upload completion JOBS holds came again, one at a time, ahead of new ones."""
        config = ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self.subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.event_ack_wait_s,
            max_deliver=self.policy.max_deliver,
            max_ack_pending=1,
        )
        if self._settled:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, self._settled + 1
        self._psub = await self.js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream, config=config)
        return self._psub

    async def run(self) -> None:
        """Handle events until cancelled (one being handled is redelivered: the fold and the uploads'
        releases are idempotent)."""
        assert self._psub is not None, "start() first"
        await pull_one_at_a_time(self._psub, self.durable, self.handle, self.start, self.unavailable)

    @property
    def label(self) -> str:
        """Its name in metrics and spans: ``dispatcher-fold`` for every partition, else its durable's."""
        return FOLD_LABEL if self.durable.startswith(FOLD_LABEL) else self.durable

    async def handle(self, msg: Msg) -> None:
        """Handle one event, guarded, counted and traced."""
        event_type = subject_event_label(msg.subject)
        EVENTS_CONSUMED.labels(self.label, event_type).inc()
        attributes = span_attributes(msg, self.durable)
        with consumer_span(f"{self.label} {event_type}", msg.headers, **attributes):
            if await self.guard.run(self.durable, msg, lambda: self.handler(msg), self.policy, ack=True):
                self._settled = max(self._settled, msg.metadata.sequence.stream)
