"""Starts, tracks and stops the webhook deliveries: one :class:`EndpointDelivery` per queue at a time.

A delivery starts on demand (:meth:`DeliveryLoops.ensure`, called by the fan-out after it enqueues,
and on a kick ``webhooks.{tenant}.{queue}.kick`` from whoever else enqueued: a replay, a redrive),
for every queue with a consumer or waiting messages at start-up, and when an endpoint is enabled; it exits after a quiet
minute with nothing pending, when its endpoint is disabled (the queue waits), or deleted (queue
purged): a kick that finds the endpoint so is settled, so its delivery is not started again until a
later kick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError

from contracts.envelope import EventEnvelope, utc_now
from services.common.nats.connection import cancel_and_wait, log_failure
from services.common.nats.publish import until_answered
from services.common.webhook_queue import QueuedDelivery
from services.notifier.observe import REFUSED, observe_ended
from services.notifier.settings import NotifierSettings
from services.notifier.webhooks.actions import publish_dead_letter
from services.notifier.webhooks.attempts import DeliveryContext
from services.notifier.webhooks.deliveries import DeliveryState, DeliveryStore
from services.notifier.webhooks.delivery import EndpointDelivery, consumer_name
from services.notifier.webhooks.leases import Leases
from services.notifier.webhooks.sender import AttemptResult, Sender
from services.notifier.webhooks.targets import EndpointCache

log = logging.getLogger(__name__)
RESTART_PAUSE_S = 1.0
"""The pause before a delivery that failed is started again."""
KICK_CATCH_UP_TRIES = 3
"""Waits for the endpoints cache (5 s each) before a kick is given up (never acted on a stale cache)."""


class DeliveryLoops:
    """The running endpoint deliveries of one notifier, by ``(tenant, endpoint id)``."""

    def __init__(
        self,
        settings: NotifierSettings,
        js: JetStreamContext,
        endpoints: EndpointCache,
        store: DeliveryStore,
        sender: Sender,
        leases: Leases | None = None,
    ) -> None:
        self.ctx = DeliveryContext(settings, js, endpoints, store, sender)
        self.leases = leases
        self.running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.closing = False
        self._kicks: Any = None
        self._kicked: set[asyncio.Task[None]] = set()

    @property
    def store(self) -> DeliveryStore:
        """The delivery states (KV ``webhook_deliveries``)."""
        return self.ctx.store

    def ensure(self, tenant: str, endpoint_id: str) -> None:
        """Make sure a delivery serves the endpoint's queue (new messages may be waiting)."""
        key = (tenant, endpoint_id)
        self.ctx.kicked.add(key)
        if key not in self.running and not self.closing:
            self.running[key] = asyncio.create_task(self._run(tenant, endpoint_id), name=f"webhook:{key}")

    async def resume_all(self) -> None:
        """Start a delivery for every endpoint queue that has a consumer or waiting messages (pending work
        survives restarts; a replay or redrive may have filled a queue no delivery ever served)."""
        prefix, js, stream = self.ctx.settings.ns.subject("webhooks."), self.ctx.js, self.ctx.stream
        consumers = await until_answered(lambda: js.consumers_info(stream), "list the delivery queues' consumers")
        subjects = [info.config.filter_subject or "" for info in consumers
                    if (info.config.durable_name or "").startswith("whd_")]  # fmt: skip
        waiting = await until_answered(
            lambda: js.stream_info(stream, subjects_filter=prefix + "*.*.deliver"), "list the waiting deliveries"
        )
        subjects += list((waiting.state.subjects or {}).keys())
        for subject in subjects:
            if subject.startswith(prefix):
                tenant, endpoint_id, _ = subject[len(prefix) :].split(".")
                self.ensure(tenant, endpoint_id)

    async def listen_for_kicks(self, nc: NatsClient) -> None:
        """Start the queue named by every kick (``webhooks.{tenant}.{queue}.kick``), once the endpoints
        cache has seen every write made before it (a delivery that finds no endpoint drops its queue)."""
        prefix = self.ctx.settings.ns.subject("webhooks.")

        async def on_kick(msg: Msg) -> None:
            tokens = msg.subject.removeprefix(prefix).split(".")
            if len(tokens) == 3 and not self.closing:
                task = asyncio.create_task(self._kicked_queue(tokens[0], tokens[1]))
                self._kicked.add(task)
                task.add_done_callback(self._kicked.discard)

        self._kicks = await nc.subscribe(self.ctx.settings.subjects.all_webhook_kicks(), cb=on_kick)

    async def _kicked_queue(self, tenant: str, queue: str) -> None:
        for _ in range(KICK_CATCH_UP_TRIES):  # a watch lost with a restarted server is made anew meanwhile
            try:
                await self.ctx.endpoints.caught_up()
            except Exception as exc:  # noqa: BLE001 - retried; at last the queue waits for the next kick or start-up
                log.debug("endpoints not caught up for a kick: %r", exc)
                continue
            self.ensure(tenant, queue)
            return
        log.warning("endpoints not caught up; a kick is ignored", extra={"tenant": tenant, "endpoint": queue})

    async def stop(self) -> None:
        """Cancel every delivery, and let the attempts under way end (for up to ``webhook_timeout_s`` and
        a second), so that what an endpoint got is acked; unacked deliveries are redelivered later."""
        self.closing = True
        if self._kicks is not None:
            with contextlib.suppress(Exception):
                await self._kicks.unsubscribe()
        await cancel_and_wait([*self.running.values(), *self._kicked])
        if self.ctx.finishing:
            await asyncio.wait(set(self.ctx.finishing), timeout=self.ctx.settings.webhook_timeout_s + 1.0)
            await cancel_and_wait(list(self.ctx.finishing))
        await asyncio.gather(*self.ctx.writes, return_exceptions=True)

    async def _run(self, tenant: str, endpoint_id: str) -> None:
        key = (tenant, endpoint_id)
        delivery = EndpointDelivery(self.ctx, tenant, endpoint_id)
        try:
            if not await delivery.stopped():
                if self.leases is None:
                    await delivery.serve()
                else:  # one replica at a time serves a queue
                    await self.leases.run(f"delivery.{consumer_name(tenant, endpoint_id)}", delivery.serve)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged by log_failure; its next run binds the consumer again
            log_failure(log, exc, "webhook delivery failed", extra={"tenant": tenant, "endpoint": endpoint_id})
            await asyncio.sleep(RESTART_PAUSE_S)
            self.ctx.kicked.add(key)
        finally:
            if self.running.get(key) is asyncio.current_task():
                del self.running[key]
                if key in self.ctx.kicked:  # work arrived while stopping: start again
                    self.ensure(tenant, endpoint_id)

    async def refused(self, delivery: QueuedDelivery, envelope: EventEnvelope, error: APIError) -> None:
        """The fan-out found ``delivery``'s queue at a limit: dead-letter it now (no attempt was made)."""
        reason = f"refused: the delivery queue is full ({error.description})"
        await publish_dead_letter(
            self.ctx.js,
            self.ctx.settings.subjects,
            tenant=delivery.tenant,
            endpoint_id=delivery.endpoint_id,
            event_id=envelope.id,
            event_type=envelope.type,
            job_id=envelope.job_id,
            attempts=0,
            result=AttemptResult(status=None, error=reason),
            source_seq=delivery.source_seq,
        )
        state = DeliveryState(
            event_id=envelope.id,
            event_type=envelope.type,
            job_id=envelope.job_id,
            status="dead_lettered",
            last_error=reason,
            last_attempt_at=utc_now(),
        )
        await self.store.put(delivery.tenant, delivery.endpoint_id, state)
        observe_ended(self.ctx.label(delivery.tenant, delivery.queue, delivery.endpoint_id), REFUSED)
        log.warning("webhook queue full: delivery dead-lettered", extra={"endpoint": delivery.endpoint_id})
