"""The webhook delivery queues: what a queued delivery carries, how one is enqueued, and the kick.

Each endpoint has a queue ``webhooks.{tenant}.{endpoint}.deliver`` in the ``WEBHOOK_DELIVERIES`` work
queue (a tenant's per-job webhooks share ``webhooks.{tenant}.jobhooks.deliver``, the endpoint id in
:data:`H_ENDPOINT`). A message's body is the event envelope as JOBS stored it; its headers
(:func:`delivery_headers`) name the event (its id is the ``webhook-id`` of every attempt), its type
and job, its JOBS sequence, and for a replayed or redriven copy where the copy came from. The
notifier's fan-out fills the queues; an operator's replay and a dead letter's redrive put a delivery
back the same way (:func:`enqueue`), so it goes through the same signed, retried attempts.

A batch enqueued together (the fan-out's) goes through :class:`ChainedSends`: its publishes go out at once,
but one job's deliveries to one queue one after another, so a publish that fails mid-batch cannot leave the
next one of that job stored before it.

Whoever enqueues outside the notifier's fan-out then :func:`kick`\\ s the queue: a core NATS message on
``webhooks.{tenant}.{queue}.kick`` that makes a notifier start that queue's delivery (a notifier that
is down finds the waiting queue when it starts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError

from contracts.subjects import Subjects
from services.common.nats.publish import REPLAY_OF, republish

H_EVENT = "Gpurelay-Event-Id"
H_TYPE = "Gpurelay-Event-Type"
H_JOB = "Gpurelay-Job"
H_URL = "Gpurelay-Url"
"""A per-job webhook's URL (it has no KV record to look up)."""
H_ENDPOINT = "Gpurelay-Endpoint"
"""A job webhook's endpoint id (``jobhook-...``) in the tenant's shared job-hook queue."""
H_SOURCE_SEQ = "Gpurelay-Source-Seq"
"""The event's JOBS stream sequence (a dead letter keeps it, so a redrive finds the body)."""
H_REPLAY_OF = REPLAY_OF
"""``{stream}:{seq}`` on a replayed or redriven delivery."""

JOB_HOOK_PREFIX = "jobhook-"
"""Endpoint ids of per-job webhooks start with this."""
JOB_HOOKS_QUEUE = "jobhooks"
"""The queue (``webhooks.{tenant}.jobhooks.deliver``) of all of a tenant's per-job webhook deliveries."""
QUEUE_FULL_CODE = 10077
"""JetStream's "store failed": a limit of the stream (discard new) refused the message."""


def queue_of(endpoint_id: str) -> str:
    """The endpoint token of an endpoint's queue subject: itself, or for a job webhook the tenant's shared queue."""
    return JOB_HOOKS_QUEUE if endpoint_id.startswith(JOB_HOOK_PREFIX) else endpoint_id


@dataclass(frozen=True, slots=True)
class QueuedDelivery:
    """One event for one endpoint, as its queue message says it."""

    tenant: str
    endpoint_id: str
    event_id: str
    event_type: str
    job_id: str | None = None
    url: str | None = None
    """Only for a per-job webhook (``jobhook-...``); a KV endpoint is looked up at delivery time."""
    source_seq: int | None = None
    replay_of: str | None = None
    trace: Mapping[str, str] | None = None
    """The event's trace context headers (``traceparent``): its delivery attempts join its trace."""

    @property
    def queue(self) -> str:
        """The endpoint token of its queue's subject (:func:`queue_of`)."""
        return queue_of(self.endpoint_id)

    def headers(self) -> dict[str, str]:
        """The queue message's headers (``Nats-Msg-Id`` is added by whoever publishes)."""
        headers = {**(self.trace or {}), H_EVENT: self.event_id, H_TYPE: self.event_type, H_JOB: self.job_id or ""}
        if self.url:
            headers[H_URL], headers[H_ENDPOINT] = self.url, self.endpoint_id
        if self.source_seq is not None:
            headers[H_SOURCE_SEQ] = str(self.source_seq)
        if self.replay_of:
            headers[H_REPLAY_OF] = self.replay_of
        return headers


def source_seq(headers: dict[str, str]) -> int | None:
    """The JOBS sequence a queue message names, if any."""
    value = headers.get(H_SOURCE_SEQ, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def is_queue_full(error: BaseException) -> bool:
    """Whether a publish was refused because the queue (or all queues) is at its limit."""
    return isinstance(error, APIError) and error.err_code == QUEUE_FULL_CODE


async def enqueue(
    js: JetStreamContext, subjects: Subjects, delivery: QueuedDelivery, body: bytes, msg_id: str
) -> PubAck:
    """Put ``delivery`` (``body``: the envelope as stored) in its queue once by ``msg_id``.

    Raises :class:`~nats.js.errors.APIError` (:func:`is_queue_full`) when the queue refuses it.
    """
    subject = subjects.webhook_deliver(delivery.tenant, delivery.queue)
    return await republish(js, subject, body, msg_id=msg_id, headers=delivery.headers())


async def kick(nc: NatsClient, subjects: Subjects, tenant: str, queue: str) -> None:
    """Tell the notifiers that ``queue`` of ``tenant`` has work (core NATS; flushed)."""
    await nc.publish(subjects.webhook_kick(tenant, queue), b"")
    await nc.flush()


ChainKey = tuple[str, str, str | None]
"""The tenant, the delivery queue and the job (``None``: an event of no job, such as an upload's)."""


class NotSentAfterFailure(Exception):
    """A delivery not published because the previous one of its job to its queue failed."""


class ChainedSends:
    """The publishes of one batch: sent together, each (tenant, queue, job) in order.

    Each task writes its publish before it first waits, so a batch of 256 costs about one round trip. But
    when one publish fails and a later one of the same job to the same queue is stored (a queue's stream
    leader lost mid-batch in a cluster: the first went to the old leader, the next to the new one), the
    batch enqueued again stores the first after the next, and the endpoint gets that job's events out of
    order (its delivery keeps queue order per job). So a delivery is published once the previous one of
    its (tenant, queue, job) is stored; after a failure it is not sent (:class:`NotSentAfterFailure`), and
    the batch, enqueued again, stores both in order. A full queue's refusal (:func:`is_queue_full`) is no
    failure here: that delivery is dead-lettered, and the next one is tried."""

    def __init__(self) -> None:
        self._last: dict[ChainKey, asyncio.Future[object]] = {}

    def send(self, key: ChainKey, publish: Callable[[], Awaitable[object]]) -> asyncio.Future[object]:
        """``publish()`` as a task, started once the previous send of ``key`` is stored."""
        sent = self._last[key] = asyncio.ensure_future(_after(self._last.get(key), publish))
        return sent


async def _after(before: asyncio.Future[object] | None, publish: Callable[[], Awaitable[object]]) -> object:
    if before is not None:
        await asyncio.wait([before])
        error = before.exception()
        if error is not None and not is_queue_full(error):
            raise NotSentAfterFailure("the previous delivery of this job to this queue failed") from error
    return await publish()
