"""The dead letters of one webhook endpoint: read them, find their events, redrive them.

Dead letters are ``webhook.dead_lettered`` events on ``webhooks.{tenant}.{endpoint}.dead`` in
``DEADLETTER``, read one by one with direct gets by subject (``next_by_subj``), so a page costs at
most ``limit + 1`` reads whatever the stream holds; the subject carries the tenant and the endpoint,
so a sequence of another endpoint's dead letter is simply not found. The event to deliver again is
read from JOBS at the dead letter's ``source_seq`` (checked: same id and tenant), else looked for
among its job's events of that type.

A redrive enqueues the event with :func:`services.common.webhook_queue.enqueue` as the notifier's
fan-out does: the same ``webhook-id``, the normal signed and retried attempts, ``Nats-Msg-Id`` =
:func:`~contracts.event_ids.redrive_msg_id` (a repeated redrive within the window is stored once)
and ``Gpurelay-Replay-Of: DEADLETTER:{seq}``. Then it deletes the dead letter and kicks the queue.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import APIError, NotFoundError
from pydantic import ValidationError

from contracts.api.dead_letters import DeadLetterDetail, DeadLetterItem, DeadLetterPage, RedriveRefusal, RedriveResult
from contracts.envelope import EventEnvelope
from contracts.event_ids import redrive_msg_id, replay_of
from contracts.events.registry import EventType, job_event_name
from contracts.events.webhooks import WebhookDeadLetteredPayload
from contracts.streams import DEADLETTER, JOBS
from contracts.subjects import Subjects
from services.common.webhook_queue import QueuedDelivery, enqueue, is_queue_full, kick, queue_of

JOB_SCAN_MAX = 10_000
"""The most events of one job and type read while looking for a dead letter's event without ``source_seq``."""


@dataclass(frozen=True, slots=True)
class Target:
    """The endpoint whose dead letters are read: a KV endpoint, or a job's webhook (with its URL)."""

    tenant: str
    endpoint_id: str
    enabled: bool
    url: str | None = None


@dataclass
class DeadLetters:
    """Dead letters on NATS for the gateway's routes."""

    js: JetStreamContext
    nc: NatsClient
    subjects: Subjects

    def _stream(self, name: str) -> str:
        return self.subjects.ns.stream(name)

    async def _get(self, stream: str, seq: int, subject: str | None = None) -> RawStreamMsg | None:
        """Message ``seq`` (or, with ``subject``, the first on it from ``seq`` on)."""
        try:
            return await self.js.get_msg(self._stream(stream), seq=seq, subject=subject, next=subject is not None)
        except NotFoundError:
            return None

    def _item(self, target: Target, msg: RawStreamMsg) -> DeadLetterItem | None:
        """The dead letter in ``msg``, if it is one of ``target``'s."""
        if msg.seq is None or msg.subject != self.subjects.webhook_dead(target.tenant, target.endpoint_id):
            return None
        try:
            envelope = EventEnvelope.from_json_bytes(msg.data or b"")
            payload = WebhookDeadLetteredPayload.model_validate(envelope.data)
        except ValidationError:
            return None
        if envelope.tenant != target.tenant or envelope.type != EventType.WEBHOOK_DEAD_LETTERED:
            return None
        fields = payload.model_dump(exclude={"endpoint_id"})
        return DeadLetterItem(
            id=msg.seq, endpoint_id=target.endpoint_id, job_id=envelope.job_id, dead_lettered_at=envelope.time, **fields
        )

    async def page(self, target: Target, after: int, limit: int) -> DeadLetterPage:
        """Up to ``limit`` dead letters after sequence ``after``, oldest first."""
        subject = self.subjects.webhook_dead(target.tenant, target.endpoint_id)
        found: list[DeadLetterItem] = []
        seq = after + 1
        while (msg := await self._get(DEADLETTER, seq, subject)) is not None and msg.seq is not None:
            if len(found) == limit:
                return DeadLetterPage(data=found, next_after=found[-1].id)
            if (item := self._item(target, msg)) is not None:
                found.append(item)
            seq = msg.seq + 1
        return DeadLetterPage(data=found)

    async def get(self, target: Target, dead_id: int) -> DeadLetterDetail | None:
        """One dead letter of ``target`` with its original event (``None``: not one of its dead letters)."""
        msg = await self._get(DEADLETTER, dead_id)
        item = None if msg is None else self._item(target, msg)
        if item is None:
            return None
        original = await self.original(target, item)
        event = None if original is None else EventEnvelope.from_json_bytes(original).model_dump(mode="json")
        return DeadLetterDetail(**item.model_dump(), event=event)

    async def original(self, target: Target, item: DeadLetterItem) -> bytes | None:
        """The bytes of the event ``item`` failed to deliver, as JOBS stored them (``None``: gone)."""
        if item.source_seq is not None:
            msg = await self._get(JOBS, item.source_seq)
            if msg is not None and self._is_event(msg, target, item):
                return msg.data
        if item.job_id is None:
            return None
        try:  # as JOBS stores it (its slot token)
            subject = self.subjects.stored_job_event(target.tenant, item.job_id, job_event_name(item.event_type))
        except ValueError:
            return None
        seq = 1
        for _ in range(JOB_SCAN_MAX):
            msg = await self._get(JOBS, seq, subject)
            if msg is None or msg.seq is None:
                return None
            if self._is_event(msg, target, item):
                return msg.data
            seq = msg.seq + 1
        return None

    @staticmethod
    def _is_event(msg: RawStreamMsg, target: Target, item: DeadLetterItem) -> bool:
        try:
            envelope = EventEnvelope.from_json_bytes(msg.data or b"")
        except ValidationError:
            return False
        return envelope.id == item.event_id and envelope.tenant == target.tenant

    async def redrive(self, target: Target, ids: list[int] | None, limit: int) -> RedriveResult:
        """Deliver again the dead letters ``ids`` (``None``: the oldest ``limit``) of ``target``."""
        items, not_found = await self._chosen(target, ids, limit)
        redriven: list[int] = []
        refused: list[RedriveRefusal] = []
        for item in items:
            reason = await self._redrive_one(target, item)
            if reason is None:
                redriven.append(item.id)
            else:
                refused.append(RedriveRefusal(id=item.id, reason=reason))
        if redriven:
            await kick(self.nc, self.subjects, target.tenant, queue_of(target.endpoint_id))
        return RedriveResult(
            redriven=redriven,
            not_found=not_found,
            refused=refused,
            remaining=await self.count(target),
            endpoint_enabled=target.enabled,
        )

    async def _chosen(
        self, target: Target, ids: list[int] | None, limit: int
    ) -> tuple[list[DeadLetterItem], list[int]]:
        """The dead letters to redrive, and the asked-for ids that are none of ``target``'s."""
        if ids is None:
            return (await self.page(target, 0, limit)).data, []
        items: list[DeadLetterItem] = []
        not_found: list[int] = []
        for dead_id in dict.fromkeys(ids):
            msg = await self._get(DEADLETTER, dead_id)
            item = None if msg is None else self._item(target, msg)
            if item is None:
                not_found.append(dead_id)
            else:
                items.append(item)
        return items, not_found

    async def _redrive_one(self, target: Target, item: DeadLetterItem) -> str | None:
        """Queue ``item``'s event again and drop the dead letter; the reason when it stays."""
        body = await self.original(target, item)
        if body is None:
            return "the event is no longer in the JOBS stream"
        delivery = QueuedDelivery(
            tenant=target.tenant,
            endpoint_id=target.endpoint_id,
            event_id=item.event_id,
            event_type=item.event_type,
            job_id=item.job_id,
            url=target.url,
            source_seq=item.source_seq,
            replay_of=replay_of(DEADLETTER, item.id),
        )
        try:
            await enqueue(self.js, self.subjects, delivery, body, redrive_msg_id(item.id, target.endpoint_id))
        except APIError as exc:
            if is_queue_full(exc):
                return "the endpoint's delivery queue is full"
            raise
        with contextlib.suppress(NotFoundError):  # a concurrent redrive removed it; the queue stored it once
            await self.js.delete_msg(self._stream(DEADLETTER), item.id)
        return None

    async def count(self, target: Target) -> int:
        """How many dead letters ``target`` has."""
        subject = self.subjects.webhook_dead(target.tenant, target.endpoint_id)
        info = await self.js.stream_info(self._stream(DEADLETTER), subjects_filter=subject)
        return int((info.state.subjects or {}).get(subject, 0))
