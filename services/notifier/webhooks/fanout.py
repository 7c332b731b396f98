"""The fan-out: a durable consumer on JOBS that enqueues one delivery per matching (event, endpoint).

Each event of the JOBS stream (``jobs.>`` and ``uploads.>``) goes to every enabled KV endpoint of its
tenant whose globs match its type, and to the job's own webhook (``spec.webhook``) when that matches.
One message per pair is published to ``webhooks.{tenant}.{endpoint_id}.deliver`` (a job's webhook:
to the tenant's shared ``webhooks.{tenant}.jobhooks.deliver``, its endpoint id in a header) with
``Nats-Msg-Id = "{event_id}:{endpoint_id}"``, so a batch fanned out twice (a crash before the ack)
is stored once within the stream's duplicate window; it keeps the event's trace context
(``traceparent``), so its delivery attempts are spans of the event's trace. A batch's publishes are
sent together (in order; one job's to one queue one after another:
:class:`~services.common.webhook_queue.ChainedSends`); its events are handled once every publish is
answered, and acked by one held AckAll ack (:mod:`~services.notifier.webhooks.fanout_acks`). A queue at its limit
(``webhook_queue_max_msgs`` per endpoint, ``webhook_queue_max_bytes`` in all) refuses the new
delivery: it is dead-lettered at once (attempts 0), and the queue keeps what it holds. nats-py's
``publish_async`` is not used: an error answer (such as that refusal) never completes its future. A
notifier that starts while a dead one's batch is still unacknowledged waits one ``ack_wait`` so that
batch is fanned out again before newer events (JetStream serves due redeliveries first): queue order
stays stream order.

The consumer starts at new events (``DeliverPolicy.NEW``) the first time it is created: deploying
the notifier on an old JOBS stream does not replay 30 days of webhooks. From then on it is durable.
Each time the fan-out starts (its lease taken) it binds the consumer anew, and a pull answered 503 (the
consumer gone, or JetStream away) binds it again after a pause: a consumer deleted under it is made
again, starting right after the last event this notifier acknowledged, so what was stored while it
was gone is fanned out too (a batch in flight when it went is fanned out again: its duplicates are
dropped by ``Nats-Msg-Id``). Only a notifier that never acknowledged anything makes it from new
events; ``gpurelay replay --to-webhook`` covers that.
:func:`~services.notifier.app.fan_out_forever` starts a fan-out that failed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import APIError
from pydantic import ValidationError

from contracts.envelope import EventEnvelope
from contracts.event_ids import delivery_msg_id
from services.common.http.nats_failover import unwatched
from services.common.nats.connection import cancel_requested, log_failure
from services.common.nats.long_pull import LongPull, PullEnded
from services.common.nats.publish import until_answered
from services.common.observability import metrics, tracing
from services.common.observability.metric_labels import event_type_label
from services.common.webhook_queue import ChainedSends, QueuedDelivery, enqueue, is_queue_full
from services.notifier.settings import NotifierSettings
from services.notifier.webhooks.delivery_loops import DeliveryLoops
from services.notifier.webhooks.fanout_acks import HeldAcks
from services.notifier.webhooks.targets import EndpointCache, JobHooks, targets_of

log = logging.getLogger(__name__)

FANOUT_DURABLE = "notifier_fanout"
BATCH = 256
RETRY_PAUSE_S = 1.0
"""The pause before binding the consumer again, or reading it again, after JetStream could not answer."""
_T = TypeVar("_T")


class EndpointsBehind(Exception):
    """A batch cannot be fanned out yet: the endpoints cache may miss an endpoint written before it.

    Raised, not answered by naking the batch alone: the long pull has brought the events after it, and
    they would be fanned out before the naked ones came back (queue order ≠ stream order; a CI run's
    endpoint got one job's event after the next two). The failure path gives back the batch and all
    that came after it, in order."""


@dataclass
class FanOut:
    """Consumes JOBS and fills the per-endpoint delivery queues."""

    settings: NotifierSettings
    js: JetStreamContext
    endpoints: EndpointCache
    job_hooks: JobHooks
    delivery: DeliveryLoops
    unavailable: Callable[[], None] = unwatched
    """Told each time JetStream failed the fan-out (the notifier's stuck-server watch)."""
    acked_through: int = field(default=0, init=False)
    """The last JOBS sequence this fan-out acknowledged (0: none yet)."""

    async def subscribe(self) -> JetStreamContext.PullSubscription:
        """Bind the durable consumer, or create it: from right after :attr:`acked_through`, or (none
        acknowledged yet) from the events stored from now on."""
        ns = self.settings.ns
        start = self.acked_through + 1 if self.acked_through else None
        config = ConsumerConfig(
            durable_name=FANOUT_DURABLE,
            description="notifier: JOBS events into the webhook delivery queues",
            deliver_policy=DeliverPolicy.NEW if start is None else DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.ALL,  # one ack for many (fanout_acks); a consumer made before keeps EXPLICIT
            ack_wait=self.settings.webhook_ack_wait_s,
            max_ack_pending=BATCH * 2,
            filter_subjects=[ns.subject("jobs.>"), ns.subject("uploads.>")],
        )
        return await self.js.pull_subscribe("", durable=FANOUT_DURABLE, stream=ns.stream("JOBS"), config=config)

    async def run(self) -> None:
        """Fan out forever (cancel to stop): bind the consumer (made again if it is gone), then fetch;
        a pull that breaks (a 503: the consumer gone, or JetStream away) binds it again."""
        psub = await self._answered("bind its consumer", self.subscribe)
        try:
            info = await self._after_inflight(psub)
            while True:
                broken = await self._fetch_until_broken(psub, HeldAcks(info, psub.consumer_info))
                log.warning("webhook fan-out fetch failed (%r); binding its consumer again", broken)
                self.unavailable()
                await asyncio.sleep(RETRY_PAUSE_S)
                with contextlib.suppress(Exception):
                    await psub.unsubscribe()
                psub = await self._answered("bind its consumer", self.subscribe)
                info = await self._answered("read its consumer", psub.consumer_info)
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def declare(self) -> None:
        """Make the durable consumer now (at start-up: events stored from then on are fanned out)."""
        psub = await until_answered(self.subscribe, "make the webhook fan-out's consumer")
        await psub.unsubscribe()

    async def _fetch_until_broken(self, psub: JetStreamContext.PullSubscription, acks: HeldAcks) -> Exception:
        """Fan out batches until a pull fails; that error. One long pull request at a time streams the
        events in as they are stored (an idle fan-out asks every 30 s, not every 2 s, and a busy one
        does not ask per batch); what it brought and was not fanned out is given back (nak'ed) when the
        fan-out stops or a batch fails, so it comes again first, in order. Handled events are acked by
        ``acks`` (:mod:`~services.notifier.webhooks.fanout_acks`), what they hold sent at the end."""
        puller, settled = LongPull(psub._nc, psub._stream, psub._consumer, batch=BATCH), True
        try:
            while True:
                try:
                    msgs = await puller.take(BATCH)
                except (PullEnded, nats.errors.Error) as exc:
                    return exc
                acks.received(msgs)
                settled = False  # a batch cut short keeps what follows it for the ack wait too (order)
                try:
                    await self.process(msgs, acks)
                except Exception as exc:  # noqa: BLE001 - logged by log_failure
                    log_failure(log, exc, "webhook fan-out failed; the batch is retried")
                    await asyncio.sleep(1.0)
                    rest = await puller.close()
                    acks.received(rest)
                    for msg in msgs + rest:
                        await msg.nak()
                settled = True
        finally:
            with contextlib.suppress(Exception):
                rest = await puller.close()
                acks.received(rest)  # never covered by the acks sent now
                for msg in rest if settled else ():
                    await msg.nak()
            await acks.stop()
            self.acked_through = max(self.acked_through, acks.acked_through)

    async def _answered(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """``call()``, tried again every :data:`RETRY_PAUSE_S` while JetStream cannot answer."""
        while True:
            try:
                return await call()
            except (nats.errors.Error, TimeoutError) as exc:
                if cancel_requested():
                    raise asyncio.CancelledError from None
                log.warning("webhook fan-out cannot %s yet: %r", what, exc)
                self.unavailable()
                await asyncio.sleep(RETRY_PAUSE_S)

    async def _after_inflight(self, psub: JetStreamContext.PullSubscription) -> ConsumerInfo:
        """If a previous holder died with a batch in flight, wait one ack wait so that batch comes back
        first (redeliveries are served before newer messages) and the queues keep stream order; the
        consumer's info as read before."""
        info = await self._answered("read its consumer", psub.consumer_info)
        if info.num_ack_pending:
            await asyncio.sleep(self.settings.webhook_ack_wait_s)
        return info

    async def process(self, msgs: list[Msg], acks: HeldAcks) -> None:
        """Enqueue every delivery of ``msgs``, then hand them to ``acks`` as handled. While the endpoints
        cache has not seen every KV write it raises :class:`EndpointsBehind` (an endpoint made before an
        event gets that event): the batch is given back like a failed one, with what came after it."""
        try:
            await self.endpoints.caught_up()
        except TimeoutError as exc:  # the cache missed writes (e.g. NATS restarted) and watches anew
            raise EndpointsBehind("the endpoints cache has not seen every KV write yet") from exc
        sends: list[tuple[QueuedDelivery, EventEnvelope, asyncio.Future[object]]] = []
        chains = ChainedSends()  # one job's deliveries to one queue in order, even when one fails
        for msg in msgs:
            envelope = self.envelope_of(msg)
            metrics.EVENTS_CONSUMED.labels(FANOUT_DURABLE, event_type_label(envelope.type if envelope else None)).inc()
            if envelope is None:
                continue
            for target in await targets_of(envelope, self.endpoints, self.job_hooks):
                delivery = QueuedDelivery(
                    tenant=target.tenant,
                    endpoint_id=target.endpoint_id,
                    event_id=envelope.id,
                    event_type=envelope.type,
                    job_id=envelope.job_id,
                    url=target.url,
                    source_seq=msg.metadata.sequence.stream,
                    trace=tracing.trace_headers(msg.headers),
                )
                msg_id = delivery_msg_id(envelope.id, delivery.endpoint_id)
                publish = functools.partial(enqueue, self.js, self.settings.subjects, delivery, msg.data, msg_id)
                send = chains.send((delivery.tenant, delivery.queue, delivery.job_id), publish)
                sends.append((delivery, envelope, send))
        if sends:
            await asyncio.wait([task for _, _, task in sends])
        errors = [task.exception() for _, _, task in sends]  # each read: one never read is logged when collected
        started: set[tuple[str, str]] = set()
        for (delivery, envelope, _), error in zip(sends, errors, strict=True):
            if error is None:
                started.add((delivery.tenant, delivery.queue))
            elif is_queue_full(error):
                assert isinstance(error, APIError)
                await self.delivery.refused(delivery, envelope, error)
            else:
                raise error  # the batch is fanned out again (duplicates are dropped by Nats-Msg-Id)
        for tenant, queue in started:
            self.delivery.ensure(tenant, queue)
        await acks.handled(msgs)

    def envelope_of(self, msg: Msg) -> EventEnvelope | None:
        """``msg``'s envelope; ``None`` (logged) when it is none, or its tenant is not its subject's."""
        tokens = self.settings.ns.strip(msg.subject).split(".")
        try:
            envelope = EventEnvelope.from_json_bytes(msg.data)
        except ValidationError:
            log.warning("skipping an event that is not an envelope", extra={"subject": msg.subject})
            return None
        if len(tokens) < 2 or tokens[1] != envelope.tenant:
            log.warning("skipping an event whose tenant differs from its subject's", extra={"subject": msg.subject})
            return None
        return envelope
