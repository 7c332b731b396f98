"""Delivery workers: one per endpoint, each consuming its queue ``webhooks.{tenant}.{endpoint}.deliver``.

Each queue has a durable pull consumer with ``max_ack_pending=1``: the endpoint receives its events in
stream order, one at a time, and a delivery waiting for a retry (a NAK with a delay) holds back the
endpoint's later deliveries, never another endpoint's. The attempt count is the message's delivery
count and the wait is its redelivery delay, so a restarted notifier resumes every pending retry.

Workers start on demand (:meth:`Workers.ensure`, called by the fan-out after it enqueues), for every
existing consumer at start-up, and when an endpoint is enabled; a worker exits after a quiet minute
with nothing pending, when its endpoint is disabled (the queue waits), or deleted (queue purged).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts.envelope import utc_now
from services.common.config import NotifierSettings
from services.notifier.actions import disable_endpoint, next_delay, publish_dead_letter
from services.notifier.deliveries import DeliveryState, DeliveryStore
from services.notifier.sender import Sender
from services.notifier.targets import JOB_HOOK_PREFIX, EndpointCache, job_webhook_secret

log = logging.getLogger(__name__)

H_EVENT, H_TYPE, H_JOB, H_URL = "Gpurelay-Event-Id", "Gpurelay-Event-Type", "Gpurelay-Job", "Gpurelay-Url"
FETCH_WAIT_S = 5.0
IDLE_EXIT_S = 60.0
JOB_HOOK_INACTIVE_S = 2 * 86_400.0


def consumer_name(tenant: str, endpoint_id: str) -> str:
    """The durable consumer of one endpoint's queue."""
    return "whd_" + hashlib.sha256(f"{tenant}/{endpoint_id}".encode()).hexdigest()[:24]


@dataclass
class Workers:
    """Starts, tracks and stops the delivery workers."""

    settings: NotifierSettings
    js: JetStreamContext
    endpoints: EndpointCache
    store: DeliveryStore
    sender: Sender
    running: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)
    kicked: set[tuple[str, str]] = field(default_factory=set)
    closing: bool = False
    writes: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def stream(self) -> str:
        """The WEBHOOK_DELIVERIES stream of this namespace."""
        return self.settings.ns.stream("WEBHOOK_DELIVERIES")

    def ensure(self, tenant: str, endpoint_id: str) -> None:
        """Make sure a worker serves the endpoint's queue (new messages may be waiting)."""
        key = (tenant, endpoint_id)
        self.kicked.add(key)
        if key not in self.running and not self.closing:
            self.running[key] = asyncio.create_task(self._run(tenant, endpoint_id), name=f"webhook:{key}")

    async def resume_all(self) -> None:
        """Start a worker for every endpoint queue that has a consumer (pending work survives restarts)."""
        prefix = self.settings.ns.subject("webhooks.")
        for info in await self.js.consumers_info(self.stream):
            subject = info.config.filter_subject or ""
            if not (info.config.durable_name or "").startswith("whd_") or not subject.startswith(prefix):
                continue
            tenant, endpoint_id, _ = subject[len(prefix) :].split(".")
            self.ensure(tenant, endpoint_id)

    async def stop(self) -> None:
        """Cancel every worker (unacked deliveries are redelivered later)."""
        self.closing = True
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self.writes, return_exceptions=True)

    async def _run(self, tenant: str, endpoint_id: str) -> None:
        key, job_hook = (tenant, endpoint_id), endpoint_id.startswith(JOB_HOOK_PREFIX)
        subject = self.settings.subjects.webhook_deliver(tenant, endpoint_id)
        config = ConsumerConfig(
            durable_name=consumer_name(tenant, endpoint_id),
            description=f"webhook deliveries {tenant}/{endpoint_id}",
            filter_subject=subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            max_ack_pending=1,
            max_deliver=-1,
            ack_wait=self.settings.webhook_ack_wait_s,
            inactive_threshold=JOB_HOOK_INACTIVE_S if job_hook else None,
        )
        try:
            psub = await self.js.pull_subscribe(subject, durable=config.durable_name, stream=self.stream, config=config)
            exhausted = await self.store.get_exhausted(tenant, endpoint_id)
            idle_since = asyncio.get_running_loop().time()
            while True:
                if not job_hook:
                    record = self.endpoints.get(tenant, endpoint_id)
                    if record is None:
                        await self._forget(tenant, endpoint_id, subject)
                        return
                    if not record.enabled:
                        return
                self.kicked.discard(key)
                try:
                    msgs = await psub.fetch(1, timeout=FETCH_WAIT_S)
                except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
                    if asyncio.get_running_loop().time() - idle_since > IDLE_EXIT_S:
                        info = await psub.consumer_info()
                        if not info.num_pending and not info.num_ack_pending and key not in self.kicked:
                            return
                    continue
                exhausted = await self._handle(tenant, endpoint_id, msgs[0], exhausted)
                idle_since = asyncio.get_running_loop().time()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook worker failed", extra={"tenant": tenant, "endpoint": endpoint_id})
            await asyncio.sleep(1.0)
            self.kicked.add(key)
        finally:
            if self.running.get(key) is asyncio.current_task():
                del self.running[key]
                if key in self.kicked:  # work arrived while stopping: start again
                    self.ensure(tenant, endpoint_id)

    async def _forget(self, tenant: str, endpoint_id: str, subject: str) -> None:
        """The endpoint was deleted: drop its queue and consumer."""
        with contextlib.suppress(NotFoundError):
            await self.js.purge_stream(self.stream, subject=subject)
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(self.stream, consumer_name(tenant, endpoint_id))

    async def _handle(self, tenant: str, endpoint_id: str, msg: Msg, exhausted: int) -> int:
        """Attempt one delivery; ack, retry later, or dead-letter it. Returns the exhaustion count."""
        headers = msg.headers or {}
        event_id, event_type, job_id = headers[H_EVENT], headers[H_TYPE], headers.get(H_JOB) or None
        attempt, now = msg.metadata.num_delivered or 1, utc_now()
        if endpoint_id.startswith(JOB_HOOK_PREFIX):
            url = headers[H_URL]
            secrets: list[str] = [job_webhook_secret(self.settings.signing_secret.get_secret_value().encode(), tenant)]
        else:
            record = self.endpoints.get(tenant, endpoint_id)
            if record is None or not record.enabled:
                await msg.nak()  # the loop stops; the delivery waits for the endpoint
                return exhausted
            url, secrets = record.url, record.signing_secrets(now)
        result = await self.sender.send(url, secrets, event_id, msg.data)
        state = DeliveryState(
            event_id=event_id,
            event_type=event_type,
            job_id=job_id,
            attempts=attempt,
            last_status_code=result.status,
            last_error=result.error,
            last_attempt_at=now,
        )
        s = self.settings
        delay = next_delay(
            s.webhook_retry_schedule_s,
            attempt,
            result,
            jitter=s.webhook_retry_jitter,
            retry_after_max_s=s.webhook_retry_after_max_s,
        )
        if result.delivered:
            await msg.ack()
            state.status = "delivered"
            if exhausted:
                exhausted = 0
                await self.store.set_exhausted(tenant, endpoint_id, 0)
        elif result.status == 410 or delay is None:
            await publish_dead_letter(
                self.js,
                s.subjects,
                tenant=tenant,
                endpoint_id=endpoint_id,
                event_id=event_id,
                event_type=event_type,
                job_id=job_id,
                attempts=attempt,
                result=result,
            )
            await msg.term()
            state.status = "dead_lettered"
            reason = None
            if result.status == 410:
                reason = "the endpoint answered 410 Gone"
            else:
                exhausted += 1
                await self.store.set_exhausted(tenant, endpoint_id, exhausted)
                if exhausted >= s.webhook_disable_after_exhausted:
                    reason = f"{exhausted} deliveries in a row exhausted their retries"
            if reason and not endpoint_id.startswith(JOB_HOOK_PREFIX):
                await disable_endpoint(self.endpoints.kv, tenant, endpoint_id, reason)
                await self.endpoints.caught_up()
        else:
            await msg.nak(delay=delay)
            state.status = "retrying"
            state.next_attempt_at = now + timedelta(seconds=delay)
        self._record(tenant, endpoint_id, state)
        return exhausted

    def _record(self, tenant: str, endpoint_id: str, state: DeliveryState) -> None:
        """Write the delivery's state in the background (a view: it must not slow deliveries)."""
        task = asyncio.create_task(self.store.put(tenant, endpoint_id, state))
        self.writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self.writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not store a delivery state", exc_info=task.exception())
