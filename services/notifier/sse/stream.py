"""Server-Sent Events from JetStream: progress coalescing, filters, the frames of a feed.

A connection's events come from a :class:`~services.notifier.sse.tap.Tap` on the process's shared live
subscription (``sse_fanout="shared"``, the default) or from a :class:`~services.notifier.sse.feed.Feed`,
a consumer of its own (``"per_connection"``): both bounded, credit-based, without gap or repeat.
:class:`Coalescer` keeps at most ``sse_progress_max_per_s``
``job.progress`` frames per second per job, always the latest; every other event passes, and a held
progress is sent before the next event of its job, so frames of one job stay in order.

Each frame sent is counted (``gpurelay_events_consumed_total{consumer="sse"}``) and, while tracing
is on, is a span in its event's trace linked to the connection's request span.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from opentelemetry.trace import SpanKind
from sse_starlette import ServerSentEvent

from contracts.events.registry import TERMINAL_JOB_EVENTS
from services.common.observability import tracing
from services.common.observability.metric_labels import event_type_label
from services.common.observability.metrics import EVENTS_CONSUMED
from services.notifier.sse.feed import Feed, Item
from services.notifier.sse.tap import Tap

PROGRESS = "job.progress"
SSE = "sse"
"""The ``consumer`` label of frames sent on SSE streams."""


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
    feed: Feed | Tap, coalescer: Coalescer, filters: Filters, *, close_on_terminal: bool, retry_ms: int
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
