"""A kind's dispatch tickets: what one is, and its consumer, pulled one at a time with nats-py.

A :class:`Ticket` asks for one attempt of a job to run: one message on ``dispatch.{kind}`` in the
dispatcher's own ``DISPATCH`` work-queue stream (published by
:class:`~services.dispatcher.job_events.JobEvents`), un-acked while its attempt runs, so queued jobs
simply wait in the stream.

Each kind has one durable pull consumer ``dispatch-{kind}`` on ``dispatch.{kind}`` (stream
``DISPATCH``) with ``max_ack_pending`` = the route's concurrency, shared by every replica: the
server holds the kind's limit (:mod:`services.dispatcher.scheduling.scheduler`). A replica pulls one ticket,
hands it to :meth:`~services.dispatcher.running.attempts.Attempts.on_ticket`, which returns once the ticket
is placed (held for an attempt, adopted, or acked) and waits for local capacity before that, and
only then pulls the next: tickets spread over the replicas by capacity.

Every ticket runs guarded (:class:`~services.dispatcher.consumers.ConsumerGuard`, manual acks: the
holder acks when its attempt ends), counted and traced like every dispatcher consumer. The loop is
nats-py's own pull (:mod:`~services.dispatcher.pull_loop`) rather than a FastStream subscriber: a ticket
is on the way to every start, and FastStream's per-message work (dependency injection, a worker-thread
hop per decode) was most of the ticket's own cost.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import BaseModel, ConfigDict, Field

from contracts.ids import ResourceId, TenantId, tenant_key
from contracts.subjects import Namespace
from services.common.http.nats_failover import unwatched
from services.common.observability.metrics import EVENTS_CONSUMED
from services.common.observability.tracing import consumer_span
from services.dispatcher.consumers import ConsumerGuard, Redelivery, span_attributes
from services.dispatcher.pull_loop import pull_one_at_a_time
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.subscribers import TICKET, Consumer

log = logging.getLogger(__name__)
OnTicket = Callable[[bytes, Msg], Awaitable[object]]


class Ticket(BaseModel):
    """Run ``attempt`` of a job, not before ``not_before`` (Unix seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: TenantId
    job_id: ResourceId
    kind: str
    attempt: int = Field(ge=1)
    not_before: float = 0.0

    @property
    def key(self) -> str:
        """The job's KV key."""
        return tenant_key(self.tenant, self.job_id)


def dispatch_subject(ns: Namespace, kind: str) -> str:
    """``dispatch.{kind}``: the tickets of one kind."""
    return ns.subject(f"dispatch.{kind}")


@dataclass
class TicketConsumer:
    """The tickets of ``kind``: ``dispatch-{kind}``, at most ``limit`` held at once across replicas."""

    js: JetStreamContext
    settings: DispatcherSettings
    guard: ConsumerGuard
    stream: str
    kind: str
    limit: int
    handler: OnTicket
    unavailable: Callable[[], None] = unwatched
    """Told of each refused pull (the replica's stuck-server watch)."""
    durable: str = field(init=False)
    _psub: JetStreamContext.PullSubscription | None = None

    def __post_init__(self) -> None:
        self.durable = f"dispatch-{self.kind}"

    @property
    def policy(self) -> Redelivery:
        """A ticket's redelivery policy (its ack wait is the lease of a held slot)."""
        s = self.settings
        return Redelivery(s.ticket_max_deliver, s.ticket_retry_delay_s, s.ticket_ack_wait_s)

    @property
    def consumer(self) -> Consumer:
        """What :func:`~services.dispatcher.subscribers.bound_and_watch` and the metrics need."""
        return Consumer(self.stream, self.durable, self.policy)

    async def start(self) -> JetStreamContext.PullSubscription:
        """Create (or bind) the durable consumer; its binding."""
        subject = dispatch_subject(self.settings.ns, self.kind)
        config = ConsumerConfig(
            durable_name=self.durable, filter_subject=subject, deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT, ack_wait=self.settings.ticket_ack_wait_s,
            max_deliver=self.policy.max_deliver, max_ack_pending=self.limit,
        )  # fmt: skip
        self._psub = await self.js.pull_subscribe(subject, durable=self.durable, stream=self.stream, config=config)
        return self._psub

    async def run(self) -> None:
        """Take tickets until cancelled (one being placed is redelivered after its ack wait, or adopted);
        a consumer found gone is made again."""
        assert self._psub is not None, "start() first"
        await pull_one_at_a_time(self._psub, self.durable, self.handle, self.start, self.unavailable)

    async def handle(self, msg: Msg) -> None:
        """Place one ticket, guarded, counted and traced (the holder acks it, not this)."""
        EVENTS_CONSUMED.labels(self.durable, TICKET).inc()
        attributes = span_attributes(msg, self.durable)
        with consumer_span(f"{self.durable} ticket", msg.headers, **attributes):
            await self.guard.run(self.durable, msg, lambda: self.handler(msg.data, msg), self.policy, ack=False)
