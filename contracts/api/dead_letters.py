"""Dead letters of a webhook endpoint over HTTP (``/v1/webhooks/{id}/dead-letters``) and their redrive.

A dead letter is a ``webhook.dead_lettered`` event in the ``DEADLETTER`` stream on
``webhooks.{tenant}.{endpoint_id}.dead``; its id is its stream sequence. A redrive puts the original
event (read from JOBS) back into the endpoint's delivery queue, keeping its ``webhook-id``, and
removes the dead letter; a redriven delivery that fails again gets a new dead letter.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field, model_validator

from contracts.base import Contract, JsonObject

PAGE_DEFAULT = 50
PAGE_MAX = 200
"""The most dead letters one page lists."""
REDRIVE_MAX = 500
"""The most dead letters one redrive request moves (ids given, or ``all``: call again while ``remaining``)."""
_BODY = ConfigDict(extra="forbid")


class DeadLetterItem(Contract):
    """One delivery that exhausted its retries (or that a full queue refused)."""

    model_config = _BODY

    id: int = Field(ge=1, description="The dead letter's id: its sequence in the DEADLETTER stream.")
    endpoint_id: str
    event_id: str = Field(description="The event's id: the webhook-id a redrive delivers it with.")
    event_type: str
    job_id: str | None = None
    attempts: int = Field(ge=0, description="0: refused before any attempt (the endpoint's queue was full).")
    last_status: int | None = Field(default=None, description="The last HTTP status; None: no response.")
    last_error: str | None = None
    dead_lettered_at: datetime
    source_seq: int | None = Field(default=None, description="The event's JOBS sequence, when known.")


class DeadLetterDetail(DeadLetterItem):
    """One dead letter with the event it would deliver again."""

    event: JsonObject | None = Field(
        default=None, description="The original event envelope; None when JOBS no longer holds it."
    )


class DeadLetterPage(Contract):
    """Dead letters oldest first; pass ``next_after`` as ``?after=`` for the next page."""

    model_config = _BODY

    data: list[DeadLetterItem]
    next_after: int | None = Field(default=None, description="None: this is the last page.")


class RedriveRequest(Contract):
    """Which dead letters to deliver again: ``ids``, or ``all`` (at most ``REDRIVE_MAX`` per request)."""

    model_config = _BODY

    ids: list[int] | None = Field(default=None, min_length=1, max_length=REDRIVE_MAX)
    all: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> RedriveRequest:
        if (self.ids is None) == (not self.all):
            raise ValueError("give either ids or all: true")
        if self.ids is not None and any(i < 1 for i in self.ids):
            raise ValueError("dead letter ids are stream sequences, 1 or more")
        return self


class RedriveRefusal(Contract):
    """A dead letter that stays where it is, and why."""

    model_config = _BODY

    id: int
    reason: str


class RedriveResult(Contract):
    """What a redrive did."""

    model_config = _BODY

    redriven: list[int] = Field(description="Back in the endpoint's queue (and no longer dead letters).")
    not_found: list[int] = Field(description="No dead letter of this endpoint has this id.")
    refused: list[RedriveRefusal] = Field(description="Left as dead letters: the event is gone, or the queue is full.")
    remaining: int = Field(ge=0, description="Dead letters of the endpoint left after this request.")
    endpoint_enabled: bool = Field(description="false: the redriven deliveries wait until the endpoint is enabled.")
