"""Delivery attempt state in the KV bucket ``webhook_deliveries`` (declared by the notifier, with a TTL).

Keys: ``{tenant}.{endpoint_id}.d.{event_id}`` holds one :class:`DeliveryState` (attempts, last
status code or error, next attempt); ``{tenant}.{endpoint_id}.exhausted`` counts the endpoint's
deliveries that exhausted their retries since its last success (auto-disable). This bucket is a
view for ``GET /v1/webhooks/{id}/deliveries``, and where a redelivered message finds how many
attempts it has had: a retrying state is stored before its NAK. JetStream's delivery count is not
the attempt count (a delivery held in a lane when its delivery stopped, or NAKed while its endpoint was
disabled, was no attempt). The retry wait itself is the message's redelivery delay in its queue; a
state lost or expired only means more attempts, never a lost delivery.

:class:`DeliveredMemory` is each notifier's own record of the queue messages it delivered, by stream
sequence. An accepted attempt is acked; when that ack does not reach the consumer's leader (a replica
cut off from it, as in a partition, or a leader change), JetStream delivers the message again after
the ack wait and it would be sent again, a duplicate the receiver must drop by ``webhook-id``. A
redelivered message this process delivered is acked again instead, and so is one a consumer made
again delivers anew (deleted under the delivery before that ack landed; its delivery count starts
again at 1). The memory is bounded (the oldest go first) and another replica that takes the queue over
does not have it: delivery stays at least once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime
from typing import Literal

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field

from contracts.streams import KV_WEBHOOK_DELIVERIES
from contracts.subjects import Namespace
from services.common.nats.kv import kv_entries

log = logging.getLogger(__name__)
BUCKET = KV_WEBHOOK_DELIVERIES
DeliveryStatus = Literal["pending", "retrying", "delivered", "dead_lettered"]


class DeliveryState(BaseModel):
    """One event's delivery to one endpoint, as the last attempt left it."""

    model_config = ConfigDict(extra="forbid")

    event_id: str
    event_type: str
    job_id: str | None = None
    status: DeliveryStatus = "pending"
    attempts: int = Field(default=0, ge=0)
    last_status_code: int | None = None
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None


class DeliveryList(BaseModel):
    """``GET /v1/webhooks/{id}/deliveries``: newest first."""

    data: list[DeliveryState]


async def open_bucket(js: JetStreamContext, ns: Namespace, ttl_s: float, replicas: int = 1) -> KeyValue:
    """Bind the bucket, creating it on first use (``replicas`` copies on a cluster)."""
    name = ns.bucket(BUCKET)
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        config = KeyValueConfig(
            bucket=name,
            description="Webhook delivery attempts (a view; the queue holds the state).",
            history=1,
            ttl=ttl_s,
            storage=StorageType.FILE,
            replicas=replicas,
        )
        return await js.create_key_value(config)


class DeliveryStore:
    """Reads and writes :class:`DeliveryState` records."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @staticmethod
    def key(tenant: str, endpoint_id: str, event_id: str) -> str:
        """The record key of one delivery."""
        return f"{tenant}.{endpoint_id}.d.{event_id}"

    async def put(self, tenant: str, endpoint_id: str, state: DeliveryState) -> None:
        """Store one delivery's state."""
        await self.kv.put(self.key(tenant, endpoint_id, state.event_id), state.model_dump_json().encode())

    async def get(self, tenant: str, endpoint_id: str, event_id: str) -> DeliveryState | None:
        """One delivery's state, if recorded (and not expired)."""
        try:
            entry = await self.kv.get(self.key(tenant, endpoint_id, event_id))
        except KeyNotFoundError:
            return None
        return DeliveryState.model_validate_json(entry.value) if entry.value else None

    async def attempt_number(self, tenant: str, endpoint_id: str, event_id: str, num_delivered: int) -> int:
        """The number of the attempt about to be made: 1 on a message's first delivery, else one more
        than the attempts recorded (JetStream's delivery count also counts deliveries that were no attempt)."""
        if num_delivered <= 1:
            return 1
        try:
            state = await self.get(tenant, endpoint_id, event_id)
        except Exception:  # noqa: BLE001 - the view is unreadable: fall back to the delivery count (bounded)
            log.warning("could not read a delivery state", extra={"endpoint": endpoint_id, "event": event_id})
            return num_delivered
        return (state.attempts if state else 0) + 1

    async def list(self, tenant: str, endpoint_id: str, limit: int = 100) -> list[DeliveryState]:
        """The endpoint's latest ``limit`` deliveries, newest first (event ids are UUIDv7)."""
        items = await kv_entries(self.kv, f"{tenant}.{endpoint_id}.d.>")
        found = [DeliveryState.model_validate_json(item.value) for item in items if item.value]
        found.sort(key=lambda s: s.event_id, reverse=True)
        return found[:limit]

    async def get_exhausted(self, tenant: str, endpoint_id: str) -> int:
        """How many deliveries of the endpoint exhausted their retries since its last success."""
        try:
            entry = await self.kv.get(f"{tenant}.{endpoint_id}.exhausted")
        except KeyNotFoundError:
            return 0
        return int(entry.value or b"0")

    async def set_exhausted(self, tenant: str, endpoint_id: str, count: int) -> None:
        """Store the endpoint's exhaustion count."""
        await self.kv.put(f"{tenant}.{endpoint_id}.exhausted", str(count).encode())


class DeliveredMemory:
    """The latest ``size`` queue messages this process delivered, by stream sequence and event id
    (``0``: none kept). Both must match: a stream made again numbers new messages from 1."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._seqs: OrderedDict[int, str] = OrderedDict()

    def add(self, seq: int, event_id: str) -> None:
        """The message at ``seq``, of event ``event_id``, was delivered."""
        if self.size:
            self._seqs[seq] = event_id
            if len(self._seqs) > self.size:
                self._seqs.popitem(last=False)

    def delivered(self, seq: int, event_id: str) -> bool:
        """Whether the message at ``seq`` of event ``event_id`` is one this process delivered."""
        return self._seqs.get(seq) == event_id
