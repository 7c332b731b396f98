"""One SSE connection on the shared live tail: catch-up from the stream, handed over to the hub by sequence.

A :class:`Tap` is what :func:`~services.notifier.sse.stream.frames` reads (the same ``async with`` /
``get`` / ``gone`` protocol as :class:`~services.notifier.sse.feed.Feed`) without a consumer of its own:

* **Catch-up.** It reads its subjects' events after its cursor straight from the stream, in batches
  of direct gets up to an end the stream leader gave (:class:`~services.notifier.sse.catch_up.CatchUpReader`),
  never more than its buffer has room for: a slow reader leaves its backlog in JetStream.
* **Hand-over.** While catching up it is *armed*: the hub's live events for it are kept in
  ``pending`` (at most ``size``; past that it disarms and re-arms later). When a round of reads finds
  nothing more while armed, every message stored before the round began has been read, and every
  one stored after it reaches ``pending`` or the live queue (the hub delivers in stream order, and the
  tap was armed before the round): the pending events after the cursor are queued and the tap goes
  live. No gap, no duplicate (a sequence at or below the cursor is dropped).
* **Live.** The hub queues its events; one arriving at a full buffer (a slow client) turns the tap
  back to catch-up, armed, from the last event queued: the backlog is read from the stream again
  once the client drains its buffer. A client that stops reading is cut by the send timeout.

Memory per connection: at most ``2 × size`` events (the queue with what its reader read ahead, and
``pending``), one ``size`` more on a tenant stream (its reader reads ahead on each of its two subjects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

import nats.errors

from services.notifier.sse.catch_up import CatchUpReader
from services.notifier.sse.direct_get import Stored
from services.notifier.sse.feed import RECOVER_S, RETRY_S, Item, read_item
from services.notifier.sse.hub import Hub, Key

log = logging.getLogger(__name__)


class Tap:
    """One connection's events: caught up from the stream after ``after``, then live from ``hub``."""

    def __init__(self, hub: Hub, key: Key, subjects: list[str], after: int, size: int) -> None:
        self.hub, self.key, self.size = hub, key, size
        self.reader = CatchUpReader(hub.nc, hub.js, hub.stream, subjects, hub.catch_up_batch, hub.direct)
        self.cursor = after
        """The last stream sequence queued (or skipped); the stream is read after it."""
        self.queue: deque[Item] = deque()
        self.pending: list[Item] = []
        self.live = False
        self.armed = True
        self.gone = False
        self.catch_ups = 1
        """How many times the tap read from the stream: 1 + the times a full buffer sent it back."""
        self.handed_over = 0
        """Live events kept while catching up and queued at the hand-over."""
        self._wake = asyncio.Event()

    async def __aenter__(self) -> Tap:
        if not await self.hub.follow(self.key, self):
            self.gone = True
        return self

    async def __aexit__(self, *_: object) -> None:
        self.hub.remove(self.key, self)

    def offer(self, item: Item) -> None:
        """A live event of this tap's key, from the hub (in stream order)."""
        if self.live:
            if item.seq <= self.cursor:
                return
            if len(self.queue) < self.size:
                self.queue.append(item)
                self.cursor = item.seq
                self._wake.set()
                return
            self.live, self.armed, self.pending = False, True, []  # a slow client: back to the stream
            self.catch_ups += 1
        if self.armed:
            if len(self.pending) < self.size:
                self.pending.append(item)
            else:
                self.armed, self.pending = False, []  # re-armed when the catch-up finds the end

    async def get(self, timeout_s: float | None) -> Item | None:
        """The next event, or ``None`` after ``timeout_s`` (``None``: until one comes).

        A live tap waits without a timer: with 10,000 connections, a wake-up per second each would be
        10,000 timers a second; :attr:`gone` is only set while catching up, inside this call."""
        while not self.queue and not self.live and not self.gone:
            await self._catch_up()
        if not self.queue and not self.gone:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._wake.wait()
        return self.queue.popleft() if self.queue else None

    async def _catch_up(self) -> None:
        """Queue up to ``size`` events from the stream; go live once it has nothing more while armed."""
        while len(self.queue) < self.size:
            msg = await self._read()
            if self.gone:
                return
            if msg is None:
                if self.armed:
                    self._go_live()
                    return
                self.armed, self.pending = True, []
                continue
            self.cursor = max(self.cursor, msg.seq)
            if (item := read_item(msg.seq, msg.subject, msg.data, msg.headers)) is not None:
                self.queue.append(item)

    def _go_live(self) -> None:
        for item in self.pending:
            if item.seq > self.cursor:
                self.queue.append(item)
                self.cursor = item.seq
                self.handed_over += 1
        self.pending, self.armed, self.live = [], False, True

    async def _read(self) -> Stored | None:
        """The next message after the cursor, retried while NATS is away (then the tap is :attr:`gone`)."""
        deadline = asyncio.get_running_loop().time() + RECOVER_S
        while True:
            try:
                return await self.reader.next(self.cursor, self.size - len(self.queue))
            except (nats.errors.Error, TimeoutError) as exc:
                self.hub.unavailable()
                if asyncio.get_running_loop().time() > deadline:
                    log.warning("an SSE stream could not read its catch-up: %r", exc)
                    self.gone = True
                    return None
                await asyncio.sleep(RETRY_S)
