"""Dead letters of the platform's consumers: a message no handler could process, kept for operators.

A consumer that gives up on a message (after its ``max_deliver`` deliveries, or at once when the
bytes cannot be an event at all) publishes it to ``deadletter.{service}.{consumer}`` in the
``DEADLETTER`` stream. The body is the original message's bytes, unchanged; headers
(``Gpurelay-Dead-*``) say where it came from (stream, subject, sequence), how often it was
delivered and the last error. ``Nats-Msg-Id`` is :attr:`DeadLetter.msg_id`, so replicas that give
up on the same message store it once. To retry one after a fix, publish its body to its subject.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import AwareDatetime, ConfigDict, Field

from contracts.base import Contract
from contracts.envelope import utc_now
from contracts.ids import ResourceId

HEADER_PREFIX = "Gpurelay-Dead-"
ERROR_MAX = 1000
_FIELDS = ("service", "consumer", "stream", "subject", "sequence", "deliveries", "error", "time")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def one_line(text: str, limit: int = ERROR_MAX) -> str:
    """``text`` with control characters (newlines included) folded to spaces, at most ``limit`` long."""
    return _CONTROL.sub(" ", text).strip()[:limit]


class DeadLetter(Contract):
    """One message a consumer gave up on: where it came from, why, and its bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: ResourceId = Field(description="The service whose consumer gave up, e.g. dispatcher.")
    consumer: ResourceId = Field(description="The durable consumer, e.g. dispatcher-jobs.")
    stream: str = Field(min_length=1, max_length=256)
    subject: str = Field(min_length=1, max_length=1024, description="The original subject.")
    sequence: int = Field(ge=1, description="The original stream sequence.")
    deliveries: int = Field(ge=1, description="How often it was delivered before the consumer gave up.")
    error: str = Field(max_length=ERROR_MAX, description="The last error, on one line.")
    time: AwareDatetime = Field(default_factory=utc_now)
    data: bytes = Field(default=b"", description="The original message's bytes (the dead letter's body).")

    @property
    def msg_id(self) -> str:
        """The dead letter's ``Nats-Msg-Id``: one per consumer and original message."""
        return f"dead:{self.consumer}:{self.stream}:{self.sequence}"

    def headers(self) -> dict[str, str]:
        """The metadata as NATS headers (values on one line), plus ``Nats-Msg-Id``."""
        values = self.model_dump(mode="json", include=set(_FIELDS))
        headers = {HEADER_PREFIX + name.title(): one_line(str(values[name])) for name in _FIELDS}
        return headers | {"Nats-Msg-Id": self.msg_id}

    @classmethod
    def from_message(cls, msg: Any) -> DeadLetter:
        """A stored dead letter (anything with ``headers`` and ``data``, e.g. a NATS message)."""
        headers: Mapping[str, str] = msg.headers or {}
        values = {name: headers.get(HEADER_PREFIX + name.title()) for name in _FIELDS}
        return cls.model_validate({**values, "data": msg.data or b""})
