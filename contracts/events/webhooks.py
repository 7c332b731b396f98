"""Payload of ``webhook.dead_lettered`` (``webhooks.{tenant}.{endpoint_id}.dead``)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from contracts.base import Contract
from contracts.ids import ResourceId


class WebhookDeadLetteredPayload(Contract):
    """A delivery that exhausted its retries, or that its endpoint's full queue refused (``attempts`` 0);
    ``event_id`` names the envelope to replay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_id: ResourceId
    event_id: str = Field(min_length=1, max_length=64)
    event_type: str = Field(min_length=1, max_length=64)
    attempts: int = Field(ge=0, description="0: refused before any attempt (the endpoint's queue was full).")
    last_status: int | None = Field(default=None, ge=100, le=599, description="None: no HTTP response.")
    last_error: str | None = Field(default=None, max_length=2000)
    source_seq: int | None = Field(
        default=None, ge=1, description="The event's JOBS stream sequence (its body, for a redrive); None: unknown."
    )
