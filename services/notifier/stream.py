"""Server-Sent Events from JetStream: a bounded feed per connection, progress coalescing, the frames.

:class:`Feed` reads the JOBS stream through an ephemeral pull consumer (memory, no acks) filtered
to the connection's subjects, starting after a stream sequence. It pulls only as many events as its
bounded queue (``sse_buffer``) has room for, so a client that reads slowly leaves the backlog in
JetStream, never in this process: memory per connection stays bounded. A client that stops reading
is cut by the send timeout (``sse_send_timeout_s``); it resumes with ``Last-Event-ID``. A gone
client's consumer is deleted at once (and would expire on its own after 30 s).

:class:`Coalescer` keeps at most ``sse_progress_max_per_s`` ``job.progress`` frames per second per
job, always the latest; every other event passes, and a held progress is sent before the next
event of its job, so frames of one job stay in order.

Each frame sent is counted (``gpurelay_events_consumed_total{consumer="sse"}``) and, while tracing
is on, is a span in its event's trace linked to the connection's request span.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import SpanKind
from sse_starlette import ServerSentEvent

from contracts.events import TERMINAL_JOB_EVENTS
from services.common import tracing
from services.common.metric_labels import event_type_label
from services.common.metrics import EVENTS_CONSUMED

log = logging.getLogger(__name__)
PROGRESS = "job.progress"
INACTIVE_S = 30.0
PULL_EXPIRES_S = 30.0
SSE = "sse"
"""The ``consumer`` label of frames sent on SSE streams."""


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


class Feed:
    """An ephemeral pull consumer on ``stream`` filtered to ``subjects``, after sequence ``after``.

    Credit-based: one pull request at a time asks for as many messages as the queue has room for,
    so the server holds the backlog and this process never holds more than ``size`` events. The
    consumer (memory storage, no acks) is deleted on close and expires on its own if we vanish.
    """

    def __init__(
        self, nc: NatsClient, js: JetStreamContext, stream: str, subjects: list[str], after: int, size: int
    ) -> None:
        self.nc, self.js, self.stream, self.subjects, self.after = nc, js, stream, subjects, after
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=size)
        self.consumer: str | None = None
        self.gone = False
        self._outstanding = 0
        self._done = asyncio.Event()
        self._consumed = asyncio.Event()
        self._sub: Any = None
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Feed:
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE, mem_storage=True, inactive_threshold=INACTIVE_S, num_replicas=1
        )
        if len(self.subjects) > 1:
            config.filter_subjects = list(self.subjects)
        else:
            config.filter_subject = self.subjects[0]
        config.deliver_policy = DeliverPolicy.ALL
        if self.after > 0:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, self.after + 1
        info = await self.js.add_consumer(self.stream, config=config)
        self.consumer = info.name
        inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(inbox, cb=self._on_msg)
        self._pump = asyncio.create_task(self._requests(inbox))
        return self

    async def _requests(self, inbox: str) -> None:
        """Keep one pull request outstanding, sized to the room left in the queue."""
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}"
        while True:
            room = self.queue.maxsize - self.queue.qsize()
            if room < max(1, self.queue.maxsize // 2):
                self._consumed.clear()
                await self._consumed.wait()
                continue
            self._outstanding, request = room, {"batch": room, "expires": int(PULL_EXPIRES_S * 1e9)}
            self._done.clear()
            await self.nc.publish(subject, json.dumps(request).encode(), reply=inbox)
            await self._done.wait()

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get("Status")
        if status and not msg.data:
            if status == "409" and "deleted" in headers.get("Description", "").lower():
                self.gone = True  # the consumer is gone (e.g. expired): end; the client resumes
            if status != "100":  # 408/409/404: the request ended; send another
                self._done.set()
            return
        self._outstanding -= 1
        if self._outstanding <= 0:
            self._done.set()
        try:
            envelope = json.loads(msg.data)
            item = Item(
                seq=msg.metadata.sequence.stream,
                type=str(envelope.get("type", "")),
                job_id=envelope.get("job_id"),
                kind=envelope.get("kind"),
                data=msg.data.decode(),
                trace=tracing.trace_headers(msg.headers) if tracing.enabled() else None,
            )
        except (ValueError, AttributeError):
            log.warning("skipping an unreadable event", extra={"subject": msg.subject})
            return
        self.queue.put_nowait(item)  # never full: we asked for at most the room there was

    async def get(self, timeout_s: float | None) -> Item | None:
        """The next event, or ``None`` after ``timeout_s`` (at most a second: check :attr:`gone`)."""
        wait = 1.0 if timeout_s is None else min(timeout_s, 1.0)
        try:
            item = await asyncio.wait_for(self.queue.get(), timeout=wait)
        except TimeoutError:
            return None
        self._consumed.set()
        return item

    async def __aexit__(self, *_: object) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        if self.consumer:
            with contextlib.suppress(Exception):
                await self.js.delete_consumer(self.stream, self.consumer)


@dataclass
class Coalescer:
    """At most ``per_s`` progress items per second per job, the latest one; ``per_s=0``: no limit."""

    per_s: float
    last: dict[str | None, float] = field(default_factory=dict)
    held: dict[str | None, Item] = field(default_factory=dict)

    def offer(self, item: Item, now: float) -> list[Item]:
        """The items to send now, in order, for a newly read ``item``."""
        job = item.job_id
        if item.type == PROGRESS and self.per_s > 0:
            if job in self.held or now - self.last.get(job, float("-inf")) < 1 / self.per_s:
                self.held[job] = item
                return []
            self.last[job] = now
            return [item]
        held = self.held.pop(job, None)
        return [held, item] if held is not None else [item]

    def due(self, now: float) -> list[Item]:
        """Held progress items whose interval has passed."""
        if not self.held:
            return []
        ready = [j for j in self.held if now - self.last.get(j, float("-inf")) >= 1 / self.per_s]
        for job in ready:
            self.last[job] = now
        return sorted((self.held.pop(j) for j in ready), key=lambda i: i.seq)

    def wait_s(self, now: float) -> float | None:
        """Seconds until a held item is due; ``None``: none is held."""
        if not self.held:
            return None
        return max(0.0, min(self.last.get(j, now) + 1 / self.per_s for j in self.held) - now)


@dataclass(frozen=True)
class Filters:
    """What a tenant stream keeps: type globs and kinds (empty: everything)."""

    types: tuple[str, ...] = ()
    kinds: frozenset[str] = frozenset()

    def keep(self, item: Item) -> bool:
        """Whether ``item`` passes."""
        if self.types and not any(fnmatch.fnmatchcase(item.type, glob) for glob in self.types):
            return False
        return not self.kinds or item.kind in self.kinds


async def frames(
    feed: Feed, coalescer: Coalescer, filters: Filters, *, close_on_terminal: bool, retry_ms: int
) -> AsyncIterator[ServerSentEvent]:
    """The SSE frames of ``feed``: ``id`` = stream sequence, ``event`` = type, ``data`` = envelope."""
    loop = asyncio.get_running_loop()
    newest = 0
    yield ServerSentEvent(comment="gpurelay events", retry=retry_ms)
    async with feed:
        while not feed.gone:
            item = await feed.get(coalescer.wait_s(loop.time()))
            now = loop.time()
            out = coalescer.due(now) if item is None else coalescer.offer(item, now)
            for ready in out:
                if not filters.keep(ready):
                    continue
                # A held progress older than a frame already sent carries no id, so the client's
                # Last-Event-ID never moves backwards.
                event_id = str(ready.seq) if ready.seq > newest else None
                newest = max(newest, ready.seq)
                EVENTS_CONSUMED.labels(SSE, event_type_label(ready.type)).inc()
                sent = (
                    tracing.start_span(f"sse {ready.type}", ready.trace, kind=SpanKind.PRODUCER)
                    if ready.trace
                    else None
                )
                yield ServerSentEvent(data=ready.data, event=ready.type, id=event_id)
                if sent is not None:
                    sent.end()  # the frame was handed to the client's connection
                if close_on_terminal and ready.type in TERMINAL_JOB_EVENTS:
                    return
