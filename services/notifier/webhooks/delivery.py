"""One endpoint's webhook delivery: its queue ``webhooks.{tenant}.{endpoint}.deliver`` read in lanes.

Each queue (an endpoint's, or a tenant's shared job-hook queue ``webhooks.{tenant}.jobhooks.deliver``)
has a durable pull consumer with ``max_ack_pending`` = ``webhook_max_ack_pending``; :class:`EndpointDelivery` keeps
per-job lanes (:mod:`services.notifier.webhooks.lanes`), so a delivery waiting for a retry (a NAK with a delay)
holds back only that job's later deliveries (kept unacked in memory, with ``in_progress`` heartbeats).
The wait is the message's redelivery delay and its attempt count is in its delivery state (stored before
the NAK; not the delivery count, which also counts deliveries that were no attempt), so a restarted
notifier resumes every pending retry. A delivery ends after a quiet minute with nothing pending, when
its endpoint is disabled (the queue waits), or deleted (the queue is purged).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.common.nats.connection import log_failure
from services.common.observability import tracing
from services.common.webhook_queue import H_ENDPOINT, H_TYPE, JOB_HOOK_PREFIX
from services.notifier.webhooks.attempts import DeliveryContext, Exhaustion, attempt
from services.notifier.webhooks.lanes import Flight, Heartbeat, Lanes, start_lanes
from services.notifier.webhooks.targets import is_job_hook_queue

log = logging.getLogger(__name__)

FETCH_WAIT_S = 5.0
IDLE_EXIT_S = 60.0
JOB_HOOK_INACTIVE_S = 2 * 86_400.0  # only the per-job queues made before the shared job-hook queue
FETCH_BATCH = 64
UNSEEN_RECHECK_S = 15.0
"""How often a delivery holding messages behind unseen ones asks whether those were acked meanwhile (by an
attempt of an earlier run that went on after it stopped: they never come to this run)."""


def consumer_name(tenant: str, endpoint_id: str) -> str:
    """The durable consumer of one endpoint's queue."""
    return "whd_" + hashlib.sha256(f"{tenant}/{endpoint_id}".encode()).hexdigest()[:24]


class EndpointDelivery:
    """Delivers one queue until it is quiet, its endpoint disabled or deleted."""

    def __init__(self, ctx: DeliveryContext, tenant: str, endpoint_id: str) -> None:
        self.ctx, self.tenant, self.endpoint_id = ctx, tenant, endpoint_id
        self.key = (tenant, endpoint_id)
        self.subject = ctx.settings.subjects.webhook_deliver(tenant, endpoint_id)
        self.exhausted = Exhaustion()

    async def stopped(self) -> bool:
        """Whether the endpoint is deleted (its queue is dropped) or disabled (its queue waits).

        Every kick so far is settled by this answer, so only a later one (new work, a re-enable)
        starts a delivery again; the queue is dropped without creating its consumer.
        """
        if is_job_hook_queue(self.endpoint_id):
            return False
        record = self.ctx.endpoints.get(self.tenant, self.endpoint_id)
        if record is not None and record.enabled:
            return False
        self.ctx.kicked.discard(self.key)
        if record is None:
            await self._forget()
        return True

    async def serve(self) -> None:
        """Bind the queue's consumer (made or updated) and deliver until done; nothing when the endpoint
        is deleted or disabled (checked each time: the lease may have been lost and taken again since)."""
        if await self.stopped():
            return
        legacy_job_hook = self.endpoint_id.startswith(JOB_HOOK_PREFIX)  # one job's queue, by an older notifier
        config = ConsumerConfig(
            durable_name=consumer_name(self.tenant, self.endpoint_id),
            description=f"webhook deliveries {self.tenant}/{self.endpoint_id}",
            filter_subject=self.subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            max_ack_pending=self.ctx.settings.webhook_max_ack_pending,
            max_deliver=-1,
            ack_wait=self.ctx.settings.webhook_ack_wait_s,
            inactive_threshold=JOB_HOOK_INACTIVE_S if legacy_job_hook else None,
        )
        js, stream = self.ctx.js, self.ctx.stream
        psub = await js.pull_subscribe(self.subject, durable=config.durable_name, stream=stream, config=config)
        try:
            info = await psub.consumer_info()
            if info.config.max_ack_pending != config.max_ack_pending:  # made before per-job lanes, or resized
                try:
                    await js.add_consumer(stream, config)  # an update of the durable
                except (nats.js.errors.Error, nats.errors.Error):
                    log.warning("could not change max_ack_pending", extra={"tenant": self.tenant})
            lanes = await start_lanes(js, stream, self.subject, info)
            self.exhausted.count = await self.ctx.store.get_exhausted(self.tenant, self.endpoint_id)
            await self._loop(psub, lanes)
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()  # each run has its own subscription

    async def _loop(self, psub: JetStreamContext.PullSubscription, lanes: Lanes) -> None:
        """Fetch in the background and start every ready message, up to the endpoint's concurrency and pace."""
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        flight = Flight(self.ctx.settings.webhook_endpoint_concurrency, self.ctx.settings.webhook_endpoint_rate_per_s)
        beat = Heartbeat(lanes, flight, max(0.2, self.ctx.settings.webhook_ack_wait_s / 3), loop.time())
        fetch: asyncio.Task[list[Msg]] | None = None
        most = self.ctx.settings.webhook_max_ack_pending
        checked_at = loop.time()
        try:
            while not await self.stopped():
                self.ctx.kicked.discard(self.key)
                if fetch is None:  # one at the window's end: JetStream sends a NAKed retry then, nothing new
                    batch = max(1, min(FETCH_BATCH, most - lanes.outstanding))
                    fetch = asyncio.create_task(_fetch(psub, batch))
                waits = [fetch, *flight.tasks]
                timeout = min(FETCH_WAIT_S, beat.every_s) if beat.beating else FETCH_WAIT_S
                if (pace := flight.pace_s(loop.time(), lanes)) is not None:
                    timeout = min(timeout, pace)
                done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                flight.settle(done, lanes)
                if fetch is not None and fetch in done:
                    msgs, fetch = fetch.result(), None
                    for msg in msgs:
                        if msg.metadata.sequence.stream not in flight.msgs:  # else a copy: its attempt settles it
                            lanes.admit(msg)
                    if msgs:
                        idle_since = loop.time()
                    # An unseen message may also never come: acked by an attempt that outlived its run.
                    if lanes.unseen and lanes.held and (msgs or loop.time() - checked_at >= UNSEEN_RECHECK_S):
                        checked_at = loop.time()
                        pending = (await psub.consumer_info()).num_ack_pending
                        if pending is not None:
                            lanes.all_known(pending, flight.answered())  # counted after the answer
                flight.start_ready(lanes, loop.time(), self._handle)
                await beat.maybe(loop.time())
                if loop.time() - idle_since > IDLE_EXIT_S and not lanes.held and not flight.tasks:
                    info = await psub.consumer_info()
                    if not info.num_pending and not info.num_ack_pending and self.key not in self.ctx.kicked:
                        return
        except BaseException:
            flight.cancel()
            raise
        finally:
            if fetch is not None:
                fetch.cancel()
            await flight.close()

    async def _handle(self, msg: Msg) -> bool:
        """Attempt one message (a span in its event's trace); whether it is finished (acked or terminated).

        The attempt is shielded from its delivery's stop (a lease lost, the notifier stopping): once its
        request is sent, the endpoint may have the event, and an attempt cut short there leaves its
        message unacked, to be sent again after the ack wait by whichever replica serves the queue then.
        It ends on its own instead (within ``webhook_timeout_s``) and acks, NAKs or dead-letters its
        message as it would have."""
        headers = msg.headers or {}
        attributes = {
            "webhook.endpoint": headers.get(H_ENDPOINT) or self.endpoint_id,
            "event.type": headers.get(H_TYPE, ""),
        }
        with tracing.consumer_span("webhook deliver", headers, **attributes):
            task = asyncio.ensure_future(attempt(self.ctx, self.tenant, self.endpoint_id, msg, self.exhausted))
            self.ctx.finishing.add(task)
            task.add_done_callback(self.ctx.finishing.discard)
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                task.add_done_callback(_ended_alone)
                raise

    async def _forget(self) -> None:
        """The endpoint was deleted: drop its queue and consumer."""
        log.info("endpoint %s of %s is gone: its queue is dropped", self.endpoint_id, self.tenant)
        with contextlib.suppress(NotFoundError):
            await self.ctx.js.purge_stream(self.ctx.stream, subject=self.subject)
        with contextlib.suppress(NotFoundError):
            await self.ctx.js.delete_consumer(self.ctx.stream, consumer_name(self.tenant, self.endpoint_id))


def _ended_alone(task: asyncio.Task[bool]) -> None:
    """An attempt that went on after its delivery stopped ended: its failure, if any, is logged (no one
    else reads it; its message comes back after the ack wait)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log_failure(log, exc, "a webhook attempt that went on after its delivery stopped failed")


async def _fetch(psub: JetStreamContext.PullSubscription, batch: int) -> list[Msg]:
    """Up to ``batch`` messages, none after :data:`FETCH_WAIT_S`."""
    try:
        return await psub.fetch(batch, timeout=FETCH_WAIT_S)
    except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
        return []
