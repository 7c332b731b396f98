"""Delivery attempt state in the KV bucket ``webhook_deliveries`` (declared by the notifier, with a TTL).

Keys: ``{tenant}.{endpoint_id}.d.{event_id}`` holds one :class:`DeliveryState` (attempts, last
status code or error, next attempt); ``{tenant}.{endpoint_id}.exhausted`` counts the endpoint's
deliveries that exhausted their retries since its last success (auto-disable). This bucket is a
view for ``GET /v1/webhooks/{id}/deliveries``: the retry state itself is the message in the
endpoint's JetStream queue (its delivery count and redelivery delay), so nothing is lost if a write
here is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field

from contracts.subjects import Namespace
from services.common.kv import kv_entries

BUCKET = "webhook_deliveries"
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


async def open_bucket(js: JetStreamContext, ns: Namespace, ttl_s: float) -> KeyValue:
    """Bind the bucket, creating it on first use."""
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
