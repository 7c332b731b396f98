"""The event envelope: CloudEvents 1.0 attribute names plus gpurelay's routing fields.

Every event on NATS, in an SSE frame and in a webhook body is one :class:`EventEnvelope`. Its
``data`` is the typed payload of its ``type`` (see :mod:`contracts.events.registry`), stored as JSON. Its
``time`` is an instant (:data:`UtcDatetime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field

from contracts.base import Contract, JsonObject
from contracts.ids import ResourceId, TenantId, new_uuid7


def utc_now() -> datetime:
    """Now, timezone-aware in UTC."""
    return datetime.now(UTC)


def _in_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""An instant: a time with a timezone (a time without one is refused), kept in UTC.

A naive time is refused rather than read as UTC: nothing says which zone its producer meant, and a
guess would shift an event by hours (its order, heartbeats, GPU time and cost). An aware time in
any offset is exact, so it is kept as the same instant in UTC.
"""


class EventEnvelope(Contract):
    """One event: who, what, when, and its typed ``data``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(
        default_factory=new_uuid7,
        min_length=1,
        max_length=64,
        description="UUIDv7; also the Nats-Msg-Id and the webhook-id.",
    )
    type: str = Field(min_length=1, max_length=64, description="Event type, e.g. job.progress.")
    source: str = Field(min_length=1, max_length=128, description="Producer, e.g. gateway or worker/pose.")
    time: UtcDatetime = Field(
        default_factory=utc_now, description="When it happened: with a timezone (none is refused), kept in UTC."
    )
    subject: str | None = Field(default=None, max_length=128, description="The resource the event is about.")
    tenant: TenantId
    job_id: ResourceId | None = None
    kind: str | None = Field(default=None, max_length=32)
    attempt: int | None = Field(default=None, ge=1, le=1000)
    data: JsonObject = Field(default_factory=dict)

    def to_json_bytes(self) -> bytes:
        """The envelope as compact JSON bytes, ready to publish."""
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes | str) -> EventEnvelope:
        """Parse and validate an envelope from JSON."""
        return cls.model_validate_json(raw)
