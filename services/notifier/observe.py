"""What the notifier tells operators (:mod:`services.common.observability.metrics`).

* Each webhook attempt by endpoint and result (``2xx`` … ``error``); each delivery that ended, by
  outcome (delivered, dead_lettered, refused); a delivered one's latency from its enqueue (the
  queue message's stored time) to its successful attempt. Endpoints are labelled by
  :class:`~services.common.observability.metric_labels.EndpointLabels` (the first ``metrics_max_endpoints``).
* SSE streams open (:class:`~services.notifier.sse.slots.SlotEventSource`) and frames sent.
* Sampled on each scrape: the fan-out's lag and the deliveries waiting in all webhook queues.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.common.observability import metrics
from services.common.observability.metric_labels import status_class
from services.notifier.settings import NotifierSettings
from services.notifier.webhooks.sender import AttemptResult

DELIVERED, DEAD_LETTERED, REFUSED = "delivered", "dead_lettered", "refused"


def observe_attempt(endpoint: str, msg: Msg, result: AttemptResult) -> None:
    """One attempt to ``endpoint`` (a label) of the queue message ``msg`` got ``result``."""
    metrics.WEBHOOK_ATTEMPTS.labels(endpoint, status_class(result.status)).inc()
    if result.delivered:
        metrics.WEBHOOK_DELIVERIES.labels(endpoint, DELIVERED).inc()
        try:
            queued = msg.metadata.timestamp.timestamp()
        except (AttributeError, ValueError, TypeError):  # not a JetStream delivery
            return
        metrics.WEBHOOK_LATENCY.labels(endpoint).observe(max(0.0, time.time() - queued))


def observe_ended(endpoint: str, outcome: str) -> None:
    """A delivery to ``endpoint`` ended otherwise than delivered (dead-lettered, refused)."""
    metrics.WEBHOOK_DELIVERIES.labels(endpoint, outcome).inc()


def start_sampling(js: JetStreamContext, settings: NotifierSettings, fanout_durable: str) -> Callable[[], None]:
    """Sample the fan-out's lag and the webhook queues' depth on every scrape; returns what stops it."""
    ns = settings.ns
    consumers = [(ns.stream("JOBS"), fanout_durable)]
    sample_consumers = metrics.consumer_sampler(js, consumers)

    async def sample() -> None:
        await sample_consumers()
        info = await js.stream_info(ns.stream("WEBHOOK_DELIVERIES"))
        metrics.WEBHOOK_QUEUED.set(info.state.messages)

    remove = metrics.add_sampler(sample)

    def stop() -> None:
        remove()
        metrics.forget_consumers(consumers)

    return stop
