"""One SSE connection's events from JetStream: a bounded feed that survives the loss of its consumer.

:class:`Feed` reads the JOBS stream through an ephemeral pull consumer (memory, no acks) filtered
to the connection's subjects, starting after a stream sequence. It pulls only as many events as its
bounded queue (``sse_buffer``) has room for, so a client that reads slowly leaves the backlog in
JetStream, never in this process: memory per connection stays bounded. A client that stops reading
is cut by the send timeout (``sse_send_timeout_s``); it resumes with ``Last-Event-ID``. A gone
client's consumer is deleted at once (and would expire on its own after 30 s). A consumer it cannot
make, and a pull that goes silent, are told to ``unavailable`` (the notifier's
:class:`~services.common.http.nats_failover.StuckServerWatch`: a server cut off from its cluster is left).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.common.event_loop import get_within
from services.common.http.nats_failover import unwatched
from services.common.nats.connection import cancel_and_wait
from services.common.observability import tracing

log = logging.getLogger(__name__)
INACTIVE_S = 30.0
PULL_EXPIRES_S = 30.0
PULL_HEARTBEAT_S = 5.0
"""The server's idle heartbeat on a pull request (``GPURELAY_SSE_PULL_HEARTBEAT_S``)."""
MISSED_HEARTBEATS = 2
"""Heartbeats a pull may miss before its consumer is taken for lost."""
RECOVER_S = 30.0
"""How long a feed tries to make its consumer (NATS away) before it ends its stream."""
RETRY_S = 0.25


@dataclass(frozen=True, slots=True)
class Item:
    """One stored event: its stream sequence, type, job, kind and the envelope JSON."""

    seq: int
    type: str
    job_id: str | None
    kind: str | None
    data: str
    trace: dict[str, str] | None = None
    """The event's trace context headers, kept only while tracing is on."""
    subject: str = ""


def read_item(seq: int, subject: str, data: bytes, headers: dict[str, str] | None) -> Item | None:
    """The :class:`Item` of one stored message; ``None`` (logged) when its bytes are not an envelope."""
    try:
        envelope = json.loads(data)
        return Item(
            seq=seq,
            type=str(envelope.get("type", "")),
            job_id=envelope.get("job_id"),
            kind=envelope.get("kind"),
            data=data.decode(),
            trace=tracing.trace_headers(headers) if tracing.enabled() else None,
            subject=subject,
        )
    except (ValueError, AttributeError):
        log.warning("skipping an unreadable event", extra={"subject": subject})
        return None


class Feed:
    """An ephemeral pull consumer on ``stream`` filtered to ``subjects``, after sequence ``after``.

    Credit-based: one pull request at a time asks for as many messages as the queue has room for,
    so the server holds the backlog and this process never holds more than ``size`` events. The
    consumer (memory storage, no acks) is deleted on close and expires on its own if we vanish.

    The consumer lives in the server's memory: a restarted server, or the death of the cluster node
    that held it, loses it along with the pull request under way, and no answer ever comes. Each pull
    asks for an idle heartbeat every ``heartbeat_s``; when neither a message nor a heartbeat arrives
    for :data:`MISSED_HEARTBEATS` of them, the feed makes a new consumer starting after the last
    sequence it read (retried while NATS is away, for at most :data:`RECOVER_S`; then the feed is
    :attr:`gone` and its client resumes with ``Last-Event-ID``).

    A delivery can also be lost while the consumer lives: written to a connection that resets while its
    pull goes on (the server keeps the pull, nats-py subscribes its inbox again, and the next messages
    come through it). The consumer acknowledges nothing, so the server never sends it again; the gap
    shows in the consumer's delivery sequence, which counts every delivery one by one (in the next
    delivery, or, when none follows, in the pull's idle heartbeat, which names the last one sent), and the
    feed then makes a new consumer after the last sequence it read. Nothing is skipped or read twice.
    """

    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        stream: str,
        subjects: list[str],
        after: int,
        size: int,
        heartbeat_s: float = PULL_HEARTBEAT_S,
        description: str | None = None,
        new_only: bool = False,
        unavailable: Callable[[], None] = unwatched,
    ) -> None:
        self.nc, self.js, self.stream, self.subjects = nc, js, stream, subjects
        self.unavailable = unavailable
        """Told each time NATS failed the feed: a consumer not made, a pull gone silent."""
        self.description = description
        self.last_seq = after
        """The last stream sequence read (queued); a new consumer starts after it."""
        self.new_only = new_only
        """Its first consumer delivers what is stored after it is made (``after`` is then the stream's
        last sequence at that moment, as the server reports it)."""
        self.opened = asyncio.Event()
        """Set once the first consumer is made (what is stored from then on comes through the feed)."""
        self.heartbeat_s = heartbeat_s
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=size)
        self.consumer: str | None = None
        self.gone = False
        self.recoveries = 0
        """How many times the consumer was made anew after it was lost."""
        self._outstanding = 0
        self._delivered = 0
        """The consumer's delivery sequence of the last message taken (0: none yet from this consumer)."""
        self._lost = False
        """A delivery went missing: the consumer is made anew after :attr:`last_seq`."""
        self._heard = False
        self._done = asyncio.Event()
        self._consumed = asyncio.Event()
        self._sub: Any = None
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Feed:
        inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(inbox, cb=self._on_msg)
        self._pump = asyncio.create_task(self._run(inbox))
        return self

    def _config(self) -> ConsumerConfig:
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            inactive_threshold=INACTIVE_S,
            num_replicas=1,
            description=self.description,
        )
        if len(self.subjects) > 1:
            config.filter_subjects = list(self.subjects)
        else:
            config.filter_subject = self.subjects[0]
        config.deliver_policy = DeliverPolicy.NEW if self.new_only else DeliverPolicy.ALL
        if self.last_seq > 0:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, self.last_seq + 1
        return config

    async def _run(self, inbox: str) -> None:
        """Make the consumer and pull from it; make it anew each time it is lost."""
        while await self._open():
            await self._pull(inbox)
            if self.gone:
                return
            self.recoveries += 1
            log.warning("an SSE feed lost its consumer; resuming after %d", self.last_seq)
        self.gone = True

    async def _open(self) -> bool:
        """Make a consumer after :attr:`last_seq` (the lost one deleted first); ``False`` if none could be made."""
        old, self.consumer = self.consumer, None
        deadline = asyncio.get_running_loop().time() + RECOVER_S
        while True:
            try:
                if old is not None:
                    with contextlib.suppress(NotFoundError):
                        await self.js.delete_consumer(self.stream, old)
                    old = None
                info = await self.js.add_consumer(self.stream, config=self._config())
                self.consumer, self._delivered, self._lost = info.name, 0, False
                if self.new_only:  # from now on, after the sequence it started from
                    self.new_only = False
                    self.last_seq = max(self.last_seq, info.delivered.stream_seq if info.delivered else 0)
                self.opened.set()
                return True
            except (nats.errors.Error, TimeoutError) as exc:
                self.unavailable()
                if asyncio.get_running_loop().time() > deadline:
                    log.warning("an SSE feed could not make its consumer: %r", exc)
                    return False
                await asyncio.sleep(RETRY_S)

    async def _pull(self, inbox: str) -> None:
        """Keep one pull request outstanding, sized to the room left in the queue; return once it is lost."""
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}"
        while not (self.gone or self._lost):  # a delivery went missing: a new consumer reads again
            room = self.queue.maxsize - self.queue.qsize()
            if room < max(1, self.queue.maxsize // 2):
                self._consumed.clear()
                await self._consumed.wait()
                continue
            self._outstanding, self._heard = room, True
            expires, heartbeat = int(PULL_EXPIRES_S * 1e9), int(self.heartbeat_s * 1e9)
            request = {"batch": room, "expires": expires, "idle_heartbeat": heartbeat}
            self._done.clear()
            await self.nc.publish(subject, json.dumps(request).encode(), reply=inbox)
            while not self._done.is_set():
                self._heard = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done.wait(), self.heartbeat_s * MISSED_HEARTBEATS)
                if not self._heard and not self._done.is_set():
                    self.unavailable()
                    return  # neither a message nor a heartbeat: the consumer and its pull are gone

    async def _on_msg(self, msg: Msg) -> None:
        self._heard = True
        headers = msg.headers or {}
        status = headers.get("Status")
        if status and not msg.data:
            if status == "409" and "deleted" in headers.get("Description", "").lower() and not self._lost:
                self.gone = True  # the consumer was deleted (e.g. expired): end; the client resumes
                # (after a lost delivery this feed deletes it itself, its pull still open: not an end)
            if status != "100":  # 408/409/404: the request ended; send another
                self._done.set()
            elif self._missed_before(headers) and not self._lost:
                log.warning("an SSE feed missed its last delivery after %d; reading again from there", self.last_seq)
                self._lost = True
                self._done.set()
            return
        try:
            seq, delivered = msg.metadata.sequence.stream, msg.metadata.sequence.consumer
        except (ValueError, AttributeError, nats.errors.Error):
            return
        if seq <= self.last_seq or self._lost:
            return  # a late message of a pull that was given up (read already), or one after a loss
        if delivered != self._delivered + 1:  # a new consumer's first is 1: a late one of the last is a gap too
            log.warning("an SSE feed missed a delivery after %d; reading again from there", self.last_seq)
            self._lost = True
            self._done.set()
            return
        self._delivered = delivered
        self._outstanding -= 1
        if self._outstanding <= 0:
            self._done.set()
        self.last_seq = seq
        item = read_item(seq, msg.subject, msg.data, msg.headers)
        if item is not None:
            self.queue.put_nowait(item)  # never full: we asked for at most the room there was

    def _missed_before(self, heartbeat: dict[str, str]) -> bool:
        """Whether an idle heartbeat says the consumer delivered more than was taken: a lost delivery that
        no later one showed (the last event, a job's terminal one, would wait for good). Its stream
        sequence must be past the last read too (a heartbeat of the consumer this one replaced says less)."""
        try:
            consumer = int(heartbeat.get("Nats-Last-Consumer", "0"))
            stream = int(heartbeat.get("Nats-Last-Stream", "0"))
        except ValueError:
            return False
        return consumer > self._delivered and stream > self.last_seq

    async def get(self, timeout_s: float | None) -> Item | None:
        """The next event, or ``None`` after ``timeout_s`` (at most a second: check :attr:`gone`)."""
        wait = 1.0 if timeout_s is None else min(timeout_s, 1.0)
        try:
            item = await get_within(self.queue, wait)
        except TimeoutError:
            return None
        self._consumed.set()
        return item

    async def __aexit__(self, *_: object) -> None:
        if self._pump is not None:
            await cancel_and_wait([self._pump])
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        if self.consumer:
            with contextlib.suppress(Exception):
                await self.js.delete_consumer(self.stream, self.consumer)
