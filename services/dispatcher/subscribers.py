"""The dispatcher's FastStream subscribers: durable pull consumers whose handlers run guarded.

Every consumer is created with an explicit ``max_deliver`` and a ``MANUAL`` ack policy: the
:class:`~services.dispatcher.consumers.ConsumerGuard` acks, naks with a delay, or dead-letters
(:mod:`services.dispatcher.consumers`). Each message is counted (``gpurelay_events_consumed_total``)
and handled in a consumer span in the trace its headers carry. :func:`bound_and_watch` then brings consumers made before
the setting existed to the same ``max_deliver`` and subscribes to their ``MAX_DELIVERIES``
advisories.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from faststream import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.nats.security import NatsSecurity, NatsUserPassword
from nats.aio.client import Client as NatsClient
from nats.js import api
from nats.js.api import DeliverPolicy

from services.common.nats.connection import connection_options
from services.common.nats.permissions import inbox_prefix
from services.common.observability.metric_labels import subject_event_label
from services.common.observability.metrics import EVENTS_CONSUMED
from services.common.observability.tracing import consumer_span
from services.dispatcher.consumers import ConsumerGuard, Redelivery, bound_redeliveries, span_attributes
from services.dispatcher.settings import DispatcherSettings

PULL_WAIT_S = 30.0
"""How long one pull request of a subscriber waits for a message: an idle consumer costs a request and
its 408 per wait, 0.07 messages/s at 30 s (0.4/s at FastStream's 5 s, the idle stack's budget is 5/s).
A message is delivered as soon as it is stored, whatever the wait; a stop cancels the wait (the
request dies with the connection)."""
TICKET = "dispatch.ticket"
"""The ``type`` label of a dispatch ticket consumed (:mod:`services.dispatcher.running.tickets`)."""


@dataclass(frozen=True, slots=True)
class Consumer:
    """One durable consumer and its redelivery policy."""

    stream: str
    durable: str
    policy: Redelivery


def make_broker(settings: DispatcherSettings) -> NatsBroker:
    """A broker that connects as every service does (:func:`~services.common.nats.connection.connection_options`:
    every server, reconnecting forever, as the dispatcher's user over its TLS: FastStream takes those as a
    ``security``) and logs through ``services.dispatcher.broker`` (its errors at ERROR, messages at DEBUG)."""
    options = connection_options(settings, "dispatcher-broker")
    options["connect_timeout"] = int(max(1, settings.nats_connect_timeout_s))
    user, password, tls = options.pop("user", None), options.pop("password", ""), options.pop("tls", None)
    security = NatsUserPassword(user, password, ssl_context=tls) if user else NatsSecurity(ssl_context=tls)
    logger = logging.getLogger("services.dispatcher.broker")
    return NatsBroker(logger=logger, log_level=logging.DEBUG, security=security, **options)


def pull_inbox_prefix(settings: DispatcherSettings) -> bytes:
    """Where a pull subscription's messages arrive: under the user's own inbox prefix (FastStream does
    not take the connection's), the only one its permissions let it read."""
    return f"{inbox_prefix(settings.nats_user)}.".encode() if settings.nats_user else api.INBOX_PREFIX


def subscribe_events(
    broker: NatsBroker,
    guard: ConsumerGuard,
    settings: DispatcherSettings,
    stream: JStream,
    subject: str,
    durable: str,
    handler: Callable[[bytes], Awaitable[object]],
    max_ack_pending: int | None = None,
) -> Consumer:
    """A consumer of events from the stream's start, acked once ``handler`` folded one."""
    s = settings
    policy = Redelivery(s.event_max_deliver, s.event_retry_delay_s, s.event_ack_wait_s, s.event_ack_wait_s)
    config = ConsumerConfig(
        max_ack_pending=max_ack_pending,
        ack_wait=s.event_ack_wait_s,
        max_deliver=policy.max_deliver,
        deliver_policy=DeliverPolicy.ALL,
    )

    @broker.subscriber(
        subject, stream=stream, durable=durable, pull_sub=PullSub(batch_size=1, timeout=PULL_WAIT_S), config=config,
        ack_policy=AckPolicy.MANUAL, inbox_prefix=pull_inbox_prefix(settings),
    )  # fmt: skip
    async def on_event(msg: NatsMessage) -> None:
        raw = msg.raw_message
        event_type = subject_event_label(raw.subject)
        EVENTS_CONSUMED.labels(durable, event_type).inc()
        with consumer_span(f"{durable} {event_type}", raw.headers, **span_attributes(raw, durable)):
            await guard.run(durable, raw, lambda: handler(raw.data), policy, ack=True)

    return Consumer(stream.name, durable, policy)


async def bound_and_watch(nc: NatsClient, guard: ConsumerGuard, consumers: list[Consumer]) -> list[Any]:
    """Apply each consumer's ``max_deliver`` (older consumers lack it) and watch its advisories."""
    js, subscriptions = nc.jetstream(), []
    for consumer in consumers:
        await bound_redeliveries(js, consumer.stream, consumer.durable, consumer.policy.max_deliver)
        subscriptions.append(await guard.watch_max_deliveries(nc, consumer.stream, consumer.durable))
    return subscriptions
