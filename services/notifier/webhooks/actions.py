"""What an endpoint delivery does besides sending: dead-letter a delivery, disable an endpoint, back off."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.api.webhooks import WebhookRecord
from contracts.envelope import utc_now
from contracts.event_ids import dead_letter_msg_id
from contracts.events.registry import EventType, make_event
from contracts.events.webhooks import WebhookDeadLetteredPayload
from contracts.ids import tenant_key
from contracts.subjects import Subjects
from services.common.nats.kv_writes import kv_update
from services.common.nats.publish import publish_event
from services.notifier.webhooks.sender import AttemptResult

log = logging.getLogger(__name__)


def next_delay(
    schedule: Sequence[float], attempt: int, result: AttemptResult, *, jitter: float, retry_after_max_s: float
) -> float | None:
    """Seconds until the next attempt after attempt number ``attempt`` (1-based) failed; ``None``: exhausted.

    ``schedule[0]`` is the first attempt (normally at once), ``schedule[n]`` the wait before attempt
    ``n + 1``. A ``Retry-After`` on 429/503 replaces the scheduled wait (capped); jitter is ± a fraction.
    """
    if attempt >= len(schedule):
        return None
    if result.retry_after_s is not None:
        return min(result.retry_after_s, retry_after_max_s)
    base = schedule[attempt]
    return max(0.0, base * (1 + random.uniform(-jitter, jitter)))


async def publish_dead_letter(
    js: JetStreamContext,
    subjects: Subjects,
    *,
    tenant: str,
    endpoint_id: str,
    event_id: str,
    event_type: str,
    job_id: str | None,
    attempts: int,
    result: AttemptResult,
    source_seq: int | None = None,
    replay: str | None = None,
) -> None:
    """Publish ``webhook.dead_lettered`` on ``webhooks.{tenant}.{endpoint_id}.dead`` (once per delivery).

    ``source_seq`` is the event's JOBS sequence (a redrive reads the body there); ``replay`` the
    ``Gpurelay-Replay-Of`` of a replayed or redriven delivery, a delivery with a dead letter of its own.
    """
    payload = WebhookDeadLetteredPayload(
        endpoint_id=endpoint_id,
        event_id=event_id,
        event_type=event_type,
        attempts=max(0, attempts),
        last_status=result.status if result.status and 100 <= result.status <= 599 else None,
        last_error=result.describe()[:2000],
        source_seq=source_seq,
    )
    envelope = make_event(EventType.WEBHOOK_DEAD_LETTERED, payload, tenant=tenant, source="notifier", job_id=job_id)
    msg_id = dead_letter_msg_id(event_id, endpoint_id, replay)
    await publish_event(js, subjects.webhook_dead(tenant, endpoint_id), envelope, msg_id=msg_id)


async def disable_endpoint(kv: KeyValue, tenant: str, endpoint_id: str, reason: str) -> bool:
    """Set ``enabled=false`` and ``disabled_reason`` on the KV record (compare-and-set); ``False``: gone."""
    key = tenant_key(tenant, endpoint_id)
    for _ in range(5):
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return False
        if not entry.value:
            return False
        record = WebhookRecord.model_validate_json(entry.value)
        if not record.enabled:
            return True
        updated = record.model_copy(update={"enabled": False, "disabled_reason": reason, "updated_at": utc_now()})
        try:
            await kv_update(kv, key, updated.model_dump_json().encode(), entry.revision or 0)
        except KeyWrongLastSequenceError:
            continue
        log.warning("webhook endpoint disabled", extra={"tenant": tenant, "endpoint": endpoint_id, "reason": reason})
        return True
    return False
