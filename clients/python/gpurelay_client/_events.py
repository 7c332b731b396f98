"""Typed events: one job's (or session's) event from SSE or a session socket, its payload parsed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gpurelay_client._models import EVENT_PAYLOADS, ApiModel, EventEnvelope

TERMINAL_EVENTS = frozenset({"job.succeeded", "job.failed", "job.canceled"})
"""The events that end a job's (and a session's) stream."""


@dataclass(frozen=True)
class Event:
    """One event: ``id`` its stream sequence (resume after it), ``type``, the ``envelope`` and its
    ``data`` as the type's payload model (``job.progress`` → :class:`JobProgressPayload` ...), or the
    raw dict for a type this client does not know."""

    id: str | None
    type: str
    envelope: EventEnvelope
    data: ApiModel | dict[str, Any]

    @property
    def seq(self) -> int | None:
        """The stream sequence as a number."""
        return int(self.id) if self.id is not None and self.id.isdigit() else None

    @property
    def terminal(self) -> bool:
        """Whether this event ends the job (succeeded, failed, canceled)."""
        return self.type in TERMINAL_EVENTS


def parse_event(event_id: str | None, event_type: str | None, envelope: dict[str, Any]) -> Event:
    """An :class:`Event` from its envelope; ``data`` typed when its type is known and it validates."""
    parsed = EventEnvelope.model_validate(envelope)
    kind = event_type or parsed.type
    data: ApiModel | dict[str, Any] = parsed.data
    payload = EVENT_PAYLOADS.get(kind)
    if payload is not None:
        try:
            data = payload.model_validate(parsed.data)
        except ValidationError:
            data = parsed.data
    return Event(event_id, kind, parsed, data)
