"""One delivery attempt of a queued webhook message: send it, then ack, retry later or dead-letter it;
a redelivered message this process delivered already is only acked
(:class:`~services.notifier.webhooks.deliveries.DeliveredMemory`).

Each attempt and each delivery that ends is counted by endpoint (:mod:`services.notifier.observe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.envelope import utc_now
from services.common.nats.connection import log_failure
from services.common.observability import tracing
from services.common.observability.metric_labels import EndpointLabels
from services.common.webhook_queue import H_ENDPOINT, H_EVENT, H_JOB, H_REPLAY_OF, H_TYPE, H_URL, source_seq
from services.notifier.observe import DEAD_LETTERED, observe_attempt, observe_ended
from services.notifier.settings import NotifierSettings
from services.notifier.webhooks.actions import disable_endpoint, next_delay, publish_dead_letter
from services.notifier.webhooks.deliveries import DeliveredMemory, DeliveryState, DeliveryStore
from services.notifier.webhooks.sender import AttemptResult, Sender
from services.notifier.webhooks.targets import EndpointCache, is_job_hook_queue, job_webhook_secret

log = logging.getLogger(__name__)


@dataclass
class DeliveryContext:
    """What every endpoint's delivery shares: settings, NATS, endpoints, delivery states, the sender."""

    settings: NotifierSettings
    js: JetStreamContext
    endpoints: EndpointCache
    store: DeliveryStore
    sender: Sender
    kicked: set[tuple[str, str]] = field(default_factory=set)
    """Queues with work announced since their delivery last looked (a kick)."""
    writes: set[asyncio.Task[None]] = field(default_factory=set)
    """Delivery-state writes under way in the background."""
    finishing: set[asyncio.Task[bool]] = field(default_factory=set)
    """Attempts under way (each shielded: one whose delivery stopped ends, and acks, on its own)."""
    delivered: DeliveredMemory = field(init=False)
    """The queue messages this process delivered, by stream sequence (the latest ``webhook_delivered_memory``)."""
    labels: EndpointLabels = field(init=False)
    """The ``endpoint`` label of the webhook metrics (the first ``metrics_max_endpoints`` endpoints)."""

    def __post_init__(self) -> None:
        self.labels = EndpointLabels(self.settings.metrics_max_endpoints)
        self.delivered = DeliveredMemory(self.settings.webhook_delivered_memory)

    def label(self, tenant: str, queue: str, endpoint_id: str) -> str:
        """The metrics label of ``tenant``'s endpoint ``endpoint_id`` read from ``queue``."""
        return self.labels(tenant, endpoint_id, job_hook=is_job_hook_queue(queue))

    @property
    def stream(self) -> str:
        """The WEBHOOK_DELIVERIES stream of this namespace."""
        return self.settings.ns.stream("WEBHOOK_DELIVERIES")


@dataclass
class Exhaustion:
    """An endpoint's deliveries that exhausted their retries since its last success (shared by its
    concurrent attempts; stored in KV ``webhook_deliveries`` at each change)."""

    count: int = 0


async def attempt(ctx: DeliveryContext, tenant: str, queue: str, msg: Msg, exhausted: Exhaustion) -> bool:
    """Attempt one delivery; ack, retry later, or dead-letter it; whether it is finished (acked or terminated)."""
    seq = msg.metadata.sequence.stream
    headers = msg.headers or {}
    event_id, event_type, job_id = headers[H_EVENT], headers[H_TYPE], headers.get(H_JOB) or None
    if ctx.delivered.delivered(seq, event_id):  # its ack did not land (redelivered, or by a consumer made again)
        await msg.ack()  # again, not sent again (services.notifier.webhooks.deliveries.DeliveredMemory)
        return True
    endpoint_id, now = headers.get(H_ENDPOINT) or queue, utc_now()
    if is_job_hook_queue(queue):
        url = headers[H_URL]
        secrets: list[str] = [job_webhook_secret(ctx.settings.signing_secret.get_secret_value().encode(), tenant)]
    else:
        record = ctx.endpoints.get(tenant, queue)
        if record is None or not record.enabled:
            await msg.nak()  # no attempt: the loop stops; the delivery waits for the endpoint
            return False
        url, secrets = record.url, record.signing_secrets(now)
    attempt = await ctx.store.attempt_number(tenant, endpoint_id, event_id, msg.metadata.num_delivered or 1)
    result = await ctx.sender.send(url, secrets, event_id, msg.data)
    observe_attempt(ctx.label(tenant, queue, endpoint_id), msg, result)
    tracing.annotate(**{"http.response.status_code": result.status or 0, "webhook.attempt": attempt})
    state = DeliveryState(
        event_id=event_id,
        event_type=event_type,
        job_id=job_id,
        attempts=attempt,
        last_status_code=result.status,
        last_error=result.error,
        last_attempt_at=now,
    )
    s = ctx.settings
    delay = next_delay(
        s.webhook_retry_schedule_s,
        attempt,
        result,
        jitter=s.webhook_retry_jitter,
        retry_after_max_s=s.webhook_retry_after_max_s,
    )
    if result.delivered:
        ctx.delivered.add(seq, event_id)
        await msg.ack()
        state.status = "delivered"
        if exhausted.count:
            exhausted.count = 0
            await ctx.store.set_exhausted(tenant, queue, 0)
    elif result.status == 410 or delay is None:
        await _dead_letter(ctx, tenant, queue, msg, state, result, exhausted)
    else:
        state.status, state.next_attempt_at = "retrying", now + timedelta(seconds=delay)
        try:  # stored before the NAK: the redelivery reads its attempt count from it
            await ctx.store.put(tenant, endpoint_id, state)
        except Exception:  # noqa: BLE001 - a lost state means one more attempt, never a lost delivery
            log.warning("could not store a retry state", extra={"tenant": tenant, "endpoint": endpoint_id})
        await msg.nak(delay=delay)
        return False
    _record(ctx, tenant, endpoint_id, state)
    return True


async def _dead_letter(
    ctx: DeliveryContext,
    tenant: str,
    queue: str,
    msg: Msg,
    state: DeliveryState,
    result: AttemptResult,
    exhausted: Exhaustion,
) -> None:
    """Terminate the delivery with a dead letter; count (and maybe disable) a KV endpoint's exhaustion."""
    headers = msg.headers or {}
    endpoint_id = headers.get(H_ENDPOINT) or queue
    await publish_dead_letter(
        ctx.js,
        ctx.settings.subjects,
        tenant=tenant,
        endpoint_id=endpoint_id,
        event_id=state.event_id,
        event_type=state.event_type,
        job_id=state.job_id,
        attempts=state.attempts,
        result=result,
        source_seq=source_seq(headers),
        replay=headers.get(H_REPLAY_OF),
    )
    await msg.term()
    state.status = "dead_lettered"
    observe_ended(ctx.label(tenant, queue, endpoint_id), DEAD_LETTERED)
    if is_job_hook_queue(queue):
        return  # a job's webhook is never disabled
    reason = None
    if result.status == 410:
        reason = "the endpoint answered 410 Gone"
    else:
        exhausted.count += 1
        await ctx.store.set_exhausted(tenant, queue, exhausted.count)
        if exhausted.count >= ctx.settings.webhook_disable_after_exhausted:
            reason = f"{exhausted.count} deliveries in a row exhausted their retries"
    if reason:
        await disable_endpoint(ctx.endpoints.kv, tenant, queue, reason)
        with contextlib.suppress(TimeoutError):  # the cache sees it later; the queue waits meanwhile
            await ctx.endpoints.caught_up()


def _record(ctx: DeliveryContext, tenant: str, endpoint_id: str, state: DeliveryState) -> None:
    """Write the delivery's state in the background (a view: it must not slow deliveries)."""
    task = asyncio.create_task(ctx.store.put(tenant, endpoint_id, state))
    ctx.writes.add(task)
    task.add_done_callback(ctx.writes.discard)
    task.add_done_callback(_written)


def _written(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log_failure(log, exc, "could not store a delivery state")
