"""Delivery workers: one per endpoint, each consuming its queue ``webhooks.{tenant}.{endpoint}.deliver``
(and one per tenant for its job webhooks' shared queue ``webhooks.{tenant}.jobhooks.deliver``).

Each queue has a durable pull consumer with ``max_ack_pending=MAX_ACK_PENDING``; the worker keeps
per-job lanes (:class:`Lanes`): a message is attempted only when no older message of its job (by stream
sequence) is unfinished, so one endpoint receives one job's events in stream order, and a delivery
waiting for a retry (a NAK with a delay) holds back only that job's later deliveries (kept unacked in
memory, with ``in_progress`` heartbeats), never other jobs' or another endpoint's. The wait is the
message's redelivery delay and its attempt count is in its delivery state (stored before the NAK; not
the delivery count, which also counts deliveries that were no attempt), so a restarted notifier resumes
every pending retry; a (re)started worker first learns which jobs may have unfinished messages it has not
seen (the consumer's ack-pending range, read from the stream) and holds those jobs until it has.

Workers start on demand (:meth:`Workers.ensure`, called by the fan-out after it enqueues), for every
existing consumer at start-up, and when an endpoint is enabled; a worker exits after a quiet minute
with nothing pending, when its endpoint is disabled (the queue waits), or deleted (queue purged): a
kick that finds the endpoint so is settled, so such a worker is not started again until a later kick.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts.envelope import utc_now
from services.common.config import NotifierSettings
from services.notifier.actions import disable_endpoint, next_delay, publish_dead_letter
from services.notifier.deliveries import DeliveryState, DeliveryStore
from services.notifier.sender import AttemptResult, Sender
from services.notifier.targets import JOB_HOOK_PREFIX, EndpointCache, is_job_hook_queue, job_webhook_secret

log = logging.getLogger(__name__)

H_EVENT, H_TYPE, H_JOB, H_URL = "Gpurelay-Event-Id", "Gpurelay-Event-Type", "Gpurelay-Job", "Gpurelay-Url"
H_ENDPOINT = "Gpurelay-Endpoint"  # a job webhook's endpoint id (jobhook-...) in the shared job-hook queue
FETCH_WAIT_S = 5.0
IDLE_EXIT_S = 60.0
JOB_HOOK_INACTIVE_S = 2 * 86_400.0  # only the per-job queues made before the shared job-hook queue
MAX_ACK_PENDING = 256
FETCH_BATCH = 64
STARTUP_SCAN_MAX = 10_000


def lane_key(headers: dict[str, str]) -> str:
    """The order lane of a delivery: its job, or the event itself when it has no job (no order needed)."""
    job = headers.get(H_JOB)
    return f"job:{job}" if job else f"event:{headers.get(H_EVENT, '')}"


@dataclass
class Lanes:
    """Per-job order within one endpoint queue, for one worker run.

    ``unfinished`` holds the stream sequences this run received and has not acked or terminated
    (attempting, held, or NAKed for a retry); ``held`` the messages waiting in memory behind an older
    one of their job. At start-up the consumer may have unacked messages this run has never seen
    (a crash, a NAKed retry): ``suspect`` lists, per lane, the sequences in the consumer's ack-pending
    range (``(ack floor, delivered]``, read from the stream); any of them not yet received blocks later
    messages of its lane until ``unseen`` (the consumer's ack-pending count at start minus the ones
    received since) is zero, or the consumer's ack-pending count shows every unacked message is known.
    ``strict`` (the range was too long to read) blocks every lane that way.
    """

    unfinished: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    held: dict[int, Msg] = field(default_factory=dict)
    lane_of: dict[int, str] = field(default_factory=dict)
    suspect: dict[str, list[int]] = field(default_factory=dict)
    seen_old: set[int] = field(default_factory=set)
    delivered_floor: int = 0
    unseen: int = 0
    strict: bool = False

    @property
    def outstanding(self) -> int:
        """Messages this run holds unacked."""
        return sum(len(v) for v in self.unfinished.values())

    def admit(self, msg: Msg) -> None:
        """A fetched message (new or redelivered) joins its lane and waits in ``held``."""
        seq = msg.metadata.sequence.stream
        lane = lane_key(msg.headers or {})
        if self.unseen and seq <= self.delivered_floor and seq not in self.seen_old:
            self.seen_old.add(seq)
            self.unseen -= 1
        self.unfinished[lane].add(seq)
        self.lane_of[seq] = lane
        self.held[seq] = msg

    def ready(self, seq: int) -> bool:
        """Whether the held message ``seq`` may be attempted now."""
        lane = self.lane_of[seq]
        if seq != min(self.unfinished[lane]):
            return False
        if self.unseen:
            if self.strict:
                return False
            for old in self.suspect.get(lane, ()):
                if old < seq and old not in self.seen_old:
                    return False
        return True

    def finish(self, seq: int) -> None:
        """Acked or terminated: the lane moves on."""
        lane = self.lane_of.pop(seq, None)
        if lane is None:
            return
        seqs = self.unfinished[lane]
        seqs.discard(seq)
        if not seqs:
            del self.unfinished[lane]

    def all_known(self, num_ack_pending: int) -> None:
        """The consumer's ack-pending count is no more than what this run tracks: nothing unseen is left."""
        if self.unseen and num_ack_pending <= self.outstanding:
            self.unseen = 0


def consumer_name(tenant: str, endpoint_id: str) -> str:
    """The durable consumer of one endpoint's queue."""
    return "whd_" + hashlib.sha256(f"{tenant}/{endpoint_id}".encode()).hexdigest()[:24]


@dataclass
class Workers:
    """Starts, tracks and stops the delivery workers."""

    settings: NotifierSettings
    js: JetStreamContext
    endpoints: EndpointCache
    store: DeliveryStore
    sender: Sender
    running: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)
    kicked: set[tuple[str, str]] = field(default_factory=set)
    closing: bool = False
    writes: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def stream(self) -> str:
        """The WEBHOOK_DELIVERIES stream of this namespace."""
        return self.settings.ns.stream("WEBHOOK_DELIVERIES")

    def ensure(self, tenant: str, endpoint_id: str) -> None:
        """Make sure a worker serves the endpoint's queue (new messages may be waiting)."""
        key = (tenant, endpoint_id)
        self.kicked.add(key)
        if key not in self.running and not self.closing:
            self.running[key] = asyncio.create_task(self._run(tenant, endpoint_id), name=f"webhook:{key}")

    async def resume_all(self) -> None:
        """Start a worker for every endpoint queue that has a consumer (pending work survives restarts)."""
        prefix = self.settings.ns.subject("webhooks.")
        for info in await self.js.consumers_info(self.stream):
            subject = info.config.filter_subject or ""
            if not (info.config.durable_name or "").startswith("whd_") or not subject.startswith(prefix):
                continue
            tenant, endpoint_id, _ = subject[len(prefix) :].split(".")
            self.ensure(tenant, endpoint_id)

    async def stop(self) -> None:
        """Cancel every worker (unacked deliveries are redelivered later)."""
        self.closing = True
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self.writes, return_exceptions=True)

    async def _run(self, tenant: str, endpoint_id: str) -> None:
        key = (tenant, endpoint_id)
        try:
            if not await self._stopped(tenant, endpoint_id):
                await self._serve(tenant, endpoint_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook worker failed", extra={"tenant": tenant, "endpoint": endpoint_id})
            await asyncio.sleep(1.0)
            self.kicked.add(key)
        finally:
            if self.running.get(key) is asyncio.current_task():
                del self.running[key]
                if key in self.kicked:  # work arrived while stopping: start again
                    self.ensure(tenant, endpoint_id)

    async def _stopped(self, tenant: str, endpoint_id: str) -> bool:
        """Whether the endpoint is deleted (its queue is dropped) or disabled (its queue waits): no worker then.

        Every kick so far is settled by this answer, so only a later one (new work, a re-enable)
        starts a worker again; the queue is dropped without creating its consumer.
        """
        if is_job_hook_queue(endpoint_id):
            return False
        record = self.endpoints.get(tenant, endpoint_id)
        if record is not None and record.enabled:
            return False
        self.kicked.discard((tenant, endpoint_id))
        if record is None:
            await self._forget(tenant, endpoint_id)
        return True

    async def _serve(self, tenant: str, endpoint_id: str) -> None:
        """Deliver the endpoint's queue until it is quiet, disabled or deleted."""
        legacy_job_hook = endpoint_id.startswith(JOB_HOOK_PREFIX)  # one job's queue, made by an older notifier
        subject = self.settings.subjects.webhook_deliver(tenant, endpoint_id)
        config = ConsumerConfig(
            durable_name=consumer_name(tenant, endpoint_id),
            description=f"webhook deliveries {tenant}/{endpoint_id}",
            filter_subject=subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            max_ack_pending=MAX_ACK_PENDING,
            max_deliver=-1,
            ack_wait=self.settings.webhook_ack_wait_s,
            inactive_threshold=JOB_HOOK_INACTIVE_S if legacy_job_hook else None,
        )
        psub = await self.js.pull_subscribe(subject, durable=config.durable_name, stream=self.stream, config=config)
        try:
            await self._deliver(tenant, endpoint_id, subject, psub, config)
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()  # each run has its own subscription

    async def _deliver(
        self,
        tenant: str,
        endpoint_id: str,
        subject: str,
        psub: JetStreamContext.PullSubscription,
        config: ConsumerConfig,
    ) -> None:
        key = (tenant, endpoint_id)
        info = await psub.consumer_info()
        if info.config.max_ack_pending != MAX_ACK_PENDING:  # made before per-job lanes: still in order
            try:
                await self.js.add_consumer(self.stream, config)  # an update of the durable
            except (nats.js.errors.Error, nats.errors.Error):
                log.warning("could not raise max_ack_pending", extra={"tenant": tenant, "endpoint": endpoint_id})
        lanes = await self._start_lanes(subject, info)
        exhausted = await self.store.get_exhausted(tenant, endpoint_id)
        loop = asyncio.get_running_loop()
        idle_since = beat_at = loop.time()
        beat_every = max(0.2, self.settings.webhook_ack_wait_s / 3)
        while not await self._stopped(tenant, endpoint_id):
            self.kicked.discard(key)
            batch = max(1, min(FETCH_BATCH, MAX_ACK_PENDING - lanes.outstanding))
            wait_s = min(FETCH_WAIT_S, beat_every) if lanes.held else FETCH_WAIT_S
            try:
                msgs = await psub.fetch(batch, timeout=wait_s)
            except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
                msgs = []
            for msg in msgs:
                lanes.admit(msg)
            if lanes.unseen and lanes.held:
                pending = (await psub.consumer_info()).num_ack_pending
                if pending is not None:
                    lanes.all_known(pending)
            progress = True
            while progress:  # attempt every held message whose lane is free, oldest first
                progress = False
                for seq in sorted(lanes.held):
                    if seq not in lanes.held or not lanes.ready(seq):
                        continue
                    if loop.time() - beat_at >= beat_every:
                        await self._beat(lanes)
                        beat_at = loop.time()
                    msg = lanes.held.pop(seq)
                    exhausted, finished = await self._handle(tenant, endpoint_id, msg, exhausted)
                    if finished:
                        lanes.finish(seq)
                    progress = True
            if loop.time() - beat_at >= beat_every:
                await self._beat(lanes)
                beat_at = loop.time()
            if msgs:
                idle_since = loop.time()
            elif loop.time() - idle_since > IDLE_EXIT_S and not lanes.held:
                info = await psub.consumer_info()
                if not info.num_pending and not info.num_ack_pending and key not in self.kicked:
                    return

    async def _start_lanes(self, subject: str, info: ConsumerInfo) -> Lanes:
        """Lanes for a (re)started worker: which lanes may have unacked messages it has not seen."""
        lanes = Lanes()
        if not info.num_ack_pending:
            return lanes
        lanes.unseen = info.num_ack_pending
        lanes.delivered_floor = info.delivered.stream_seq if info.delivered and info.delivered.stream_seq else 0
        seq = (info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0) + 1
        scanned = 0
        while seq <= lanes.delivered_floor:
            if scanned >= STARTUP_SCAN_MAX:
                lanes.strict = True
                break
            try:
                raw = await self.js.get_msg(self.stream, seq=seq, subject=subject, next=True)
            except NotFoundError:
                break
            if raw.seq is None or raw.seq > lanes.delivered_floor:
                break
            lanes.suspect.setdefault(lane_key(raw.headers or {}), []).append(raw.seq)
            seq, scanned = raw.seq + 1, scanned + 1
        return lanes

    @staticmethod
    async def _beat(lanes: Lanes) -> None:
        """Keep held messages from being redelivered while they wait in memory."""
        for msg in list(lanes.held.values()):
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _forget(self, tenant: str, endpoint_id: str) -> None:
        """The endpoint was deleted: drop its queue and consumer."""
        with contextlib.suppress(NotFoundError):
            await self.js.purge_stream(self.stream, subject=self.settings.subjects.webhook_deliver(tenant, endpoint_id))
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(self.stream, consumer_name(tenant, endpoint_id))

    async def _handle(self, tenant: str, queue: str, msg: Msg, exhausted: int) -> tuple[int, bool]:
        """Attempt one delivery; ack, retry later, or dead-letter it.

        Returns the exhaustion count and whether the message is finished (acked or terminated).
        """
        headers = msg.headers or {}
        event_id, event_type, job_id = headers[H_EVENT], headers[H_TYPE], headers.get(H_JOB) or None
        endpoint_id, now = headers.get(H_ENDPOINT) or queue, utc_now()
        if is_job_hook_queue(queue):
            url = headers[H_URL]
            secrets: list[str] = [job_webhook_secret(self.settings.signing_secret.get_secret_value().encode(), tenant)]
        else:
            record = self.endpoints.get(tenant, queue)
            if record is None or not record.enabled:
                await msg.nak()  # no attempt: the loop stops; the delivery waits for the endpoint
                return exhausted, False
            url, secrets = record.url, record.signing_secrets(now)
        attempt = await self.store.attempt_number(tenant, endpoint_id, event_id, msg.metadata.num_delivered or 1)
        result = await self.sender.send(url, secrets, event_id, msg.data)
        state = DeliveryState(
            event_id=event_id,
            event_type=event_type,
            job_id=job_id,
            attempts=attempt,
            last_status_code=result.status,
            last_error=result.error,
            last_attempt_at=now,
        )
        s = self.settings
        delay = next_delay(
            s.webhook_retry_schedule_s,
            attempt,
            result,
            jitter=s.webhook_retry_jitter,
            retry_after_max_s=s.webhook_retry_after_max_s,
        )
        if result.delivered:
            await msg.ack()
            state.status = "delivered"
            if exhausted:
                exhausted = 0
                await self.store.set_exhausted(tenant, queue, 0)
        elif result.status == 410 or delay is None:
            exhausted = await self._dead_letter(tenant, queue, msg, state, result, exhausted)
        else:
            state.status, state.next_attempt_at = "retrying", now + timedelta(seconds=delay)
            try:  # stored before the NAK: the redelivery reads its attempt count from it
                await self.store.put(tenant, endpoint_id, state)
            except Exception:  # noqa: BLE001 - a lost state means one more attempt, never a lost delivery
                log.warning("could not store a retry state", extra={"tenant": tenant, "endpoint": endpoint_id})
            await msg.nak(delay=delay)
            return exhausted, False
        self._record(tenant, endpoint_id, state)
        return exhausted, True

    async def _dead_letter(
        self, tenant: str, queue: str, msg: Msg, state: DeliveryState, result: AttemptResult, exhausted: int
    ) -> int:
        """Terminate the delivery with a dead letter; count (and maybe disable) a KV endpoint's exhaustion."""
        endpoint_id = (msg.headers or {}).get(H_ENDPOINT) or queue
        await publish_dead_letter(
            self.js,
            self.settings.subjects,
            tenant=tenant,
            endpoint_id=endpoint_id,
            event_id=state.event_id,
            event_type=state.event_type,
            job_id=state.job_id,
            attempts=state.attempts,
            result=result,
        )
        await msg.term()
        state.status = "dead_lettered"
        if is_job_hook_queue(queue):
            return exhausted  # a job's webhook is never disabled
        reason = None
        if result.status == 410:
            reason = "the endpoint answered 410 Gone"
        else:
            exhausted += 1
            await self.store.set_exhausted(tenant, queue, exhausted)
            if exhausted >= self.settings.webhook_disable_after_exhausted:
                reason = f"{exhausted} deliveries in a row exhausted their retries"
        if reason:
            await disable_endpoint(self.endpoints.kv, tenant, queue, reason)
            await self.endpoints.caught_up()
        return exhausted

    def _record(self, tenant: str, endpoint_id: str, state: DeliveryState) -> None:
        """Write the delivery's state in the background (a view: it must not slow deliveries)."""
        task = asyncio.create_task(self.store.put(tenant, endpoint_id, state))
        self.writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self.writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not store a delivery state", exc_info=task.exception())
