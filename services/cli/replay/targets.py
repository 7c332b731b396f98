"""Where ``gpurelay replay`` sends what it reads: stdout, a subject, or one webhook endpoint's queue.

Each target says whether it takes a message (:meth:`Target.skip`: a reason, or ``None``) and sends
it (:meth:`Target.send`: ``sent``, ``duplicate`` or ``refused``); a dry run asks only the first.

* :class:`StdoutTarget`: one JSON line per message (``seq``, ``subject``, ``time``, ``event``).
* :class:`SubjectTarget`: the bytes and headers republished on ``--to-subject`` (a stream must store
  it), with ``Gpurelay-Replay-Of: {stream}:{seq}`` and ``Nats-Msg-Id`` =
  :func:`~contracts.event_ids.replay_msg_id`, so a replay repeated within the target stream's
  duplicate window is stored once, and consumers can tell a copy and dedupe it.
* :class:`WebhookTarget`: each event of the endpoint's tenant and subscribed types queued into that
  endpoint's delivery queue (:func:`services.common.webhook_queue.enqueue`, as the notifier's fan-out
  does), so it is signed, retried and dead-lettered as usual and keeps its ``webhook-id`` (the event
  id); then the queue is kicked.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import typer
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import PubAck
from nats.js.errors import APIError, NotFoundError
from pydantic import ValidationError

from contracts.api.webhooks import WebhookRecord
from contracts.envelope import EventEnvelope
from contracts.event_ids import replay_msg_id, replay_of
from contracts.streams import JOBS, KV_WEBHOOKS
from services.common.config import BaseServiceSettings
from services.common.nats.kv import kv_entries
from services.common.nats.publish import REPLAY_OF, copied_headers, republish
from services.common.webhook_queue import QueuedDelivery, enqueue, is_queue_full, kick

Outcome = Literal["sent", "duplicate", "refused"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stored_time(msg: Msg) -> datetime:
    """When the stream stored ``msg``, truncated to the microsecond (metadata's float rounds)."""
    try:
        tokens = msg._get_metadata_fields(msg.reply)
        nanos = int(tokens[7] if len(tokens) == 9 else tokens[Msg.Ack.Timestamp])
    except (ValueError, IndexError, TypeError):
        return msg.metadata.timestamp
    return EPOCH + timedelta(microseconds=nanos // 1000)


def line(msg: Msg, settings: BaseServiceSettings) -> dict[str, Any]:
    """One output line: stream sequence, subject (without the namespace), stored time, event."""
    text = msg.data.decode("utf-8", errors="replace")
    try:
        event: Any = json.loads(text)
    except ValueError:
        event = text
    return {
        "seq": msg.metadata.sequence.stream,
        "subject": settings.ns.strip(msg.subject),
        "time": stored_time(msg).isoformat().replace("+00:00", "Z"),
        "event": event,
    }


@dataclass
class Tally:
    """What a replay did: messages in range, sent, duplicates dropped, skipped (by reason), refused."""

    matched: int = 0
    sent: int = 0
    duplicates: int = 0
    refused: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def summary(self, target: str, dry_run: bool) -> dict[str, Any]:
        """The JSON summary line."""
        done = {"would_send": self.matched - self.skipped.total()} if dry_run else {
            "sent": self.sent, "duplicates": self.duplicates, "refused": self.refused
        }  # fmt: skip
        return {"target": target, "dry_run": dry_run, "matched": self.matched, **done, "skipped": dict(self.skipped)}


class Target(Protocol):
    """A replay target."""

    name: str

    def skip(self, msg: Msg) -> str | None:
        """Why ``msg`` is not sent to this target (``None``: it is)."""

    async def send(self, msg: Msg) -> Outcome:
        """Send ``msg``."""

    async def finish(self) -> None:
        """Everything is sent."""


@dataclass
class StdoutTarget:
    """JSON lines on stdout."""

    settings: BaseServiceSettings
    name: str = "stdout"

    def skip(self, msg: Msg) -> str | None:
        return None

    async def send(self, msg: Msg) -> Outcome:
        typer.echo(json.dumps(line(msg, self.settings), separators=(",", ":")))
        return "sent"

    async def finish(self) -> None:
        return None


@dataclass
class SubjectTarget:
    """Republish on one subject (namespace-relative), marked as a copy."""

    nc: NatsClient
    settings: BaseServiceSettings
    stream: str
    subject: str
    name: str = ""

    async def check(self) -> None:
        """Refuse a subject no stream stores (a core publish would vanish unseen)."""
        self.name = f"subject {self.subject}"
        try:
            await self.nc.jetstream().find_stream_name_by_subject(self.settings.ns.subject(self.subject))
        except NotFoundError:
            raise typer.BadParameter(f"no stream stores {self.subject!r}", param_hint="--to-subject") from None

    def skip(self, msg: Msg) -> str | None:
        return None

    async def send(self, msg: Msg) -> Outcome:
        seq = msg.metadata.sequence.stream
        headers = copied_headers(msg.headers) | {REPLAY_OF: replay_of(self.stream, seq)}
        msg_id = replay_msg_id(self.stream, seq, self.subject)
        subject = self.settings.ns.subject(self.subject)
        return _outcome(await republish(self.nc.jetstream(), subject, msg.data, msg_id=msg_id, headers=headers))

    async def finish(self) -> None:
        return None


def _outcome(ack: PubAck) -> Outcome:
    return "duplicate" if ack.duplicate else "sent"


@dataclass
class WebhookTarget:
    """Queue events for one KV webhook endpoint through the normal delivery path."""

    nc: NatsClient
    settings: BaseServiceSettings
    stream: str
    endpoint_id: str
    record: WebhookRecord | None = None
    name: str = ""
    _envelopes: dict[int, EventEnvelope] = field(default_factory=dict)

    async def load(self) -> WebhookRecord:
        """Find the endpoint (any tenant: its id is unique) in KV ``webhooks``."""
        self.name = f"webhook {self.endpoint_id}"
        kv = await self.nc.jetstream().key_value(self.settings.ns.bucket(KV_WEBHOOKS))
        items = [] if "." in self.endpoint_id else await kv_entries(kv, f"*.{self.endpoint_id}")
        if not items:
            raise typer.BadParameter(f"no webhook endpoint {self.endpoint_id!r}", param_hint="--to-webhook")
        self.record = WebhookRecord.model_validate_json(items[0].value)
        return self.record

    def skip(self, msg: Msg) -> str | None:
        assert self.record is not None
        try:
            envelope = EventEnvelope.from_json_bytes(msg.data)
        except ValidationError:
            return "not an event"
        if envelope.tenant != self.record.tenant:
            return "another tenant"
        if not self.record.matches(envelope.type):
            return "type not subscribed"
        self._envelopes = {msg.metadata.sequence.stream: envelope}
        return None

    async def send(self, msg: Msg) -> Outcome:
        assert self.record is not None
        seq = msg.metadata.sequence.stream
        envelope = self._envelopes.pop(seq, None) or EventEnvelope.from_json_bytes(msg.data)
        delivery = QueuedDelivery(
            tenant=self.record.tenant,
            endpoint_id=self.endpoint_id,
            event_id=envelope.id,
            event_type=envelope.type,
            job_id=envelope.job_id,
            source_seq=seq if self.stream == JOBS else None,
            replay_of=replay_of(self.stream, seq),
        )
        msg_id = replay_msg_id(self.stream, seq, self.endpoint_id)
        try:
            return _outcome(await enqueue(self.nc.jetstream(), self.settings.subjects, delivery, msg.data, msg_id))
        except APIError as exc:
            if is_queue_full(exc):
                return "refused"
            raise

    async def finish(self) -> None:
        assert self.record is not None
        await kick(self.nc, self.settings.subjects, self.record.tenant, self.endpoint_id)
