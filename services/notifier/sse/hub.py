"""The shared live tail of one notifier process: one JetStream consumer on JOBS, fanned out in memory.

:class:`Hub` reads every event of ``jobs.>`` and ``uploads.>`` through one
:class:`~services.notifier.sse.feed.Feed` (an ephemeral pull consumer that survives its own loss: no gap,
no repeat), in stream order, and offers each to the :class:`~services.notifier.sse.tap.Tap` of every SSE
connection that follows its job (``("job", tenant, job_id)``) or its tenant (``("tenant", tenant)``).
The server's consumer count is therefore one per notifier process, whatever the number of
connections; each tap catches up from the stream itself (:mod:`services.notifier.sse.tap`) and takes
over the live tail by sequence. The feed runs only while a tap follows something (issue 34: a
notifier with no SSE connection had every event delivered to it, and its idle pulls and heartbeats):
the first tap makes it, from the stream's end, before it begins its catch-up (:meth:`Hub.follow`), so
what is stored after its catch-up began still reaches it live; the last one to go ends it. The hub
also holds what the taps' catch-ups share: their batch size and whether the stream answers direct
gets (read from its config at start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from services.common.http.nats_failover import unwatched
from services.common.nats.connection import cancel_and_wait
from services.common.nats.publish import until_answered
from services.notifier.sse.catch_up import BATCH, DirectGets
from services.notifier.sse.feed import RECOVER_S, RETRY_S, Feed, Item

log = logging.getLogger(__name__)
HUB_DESCRIPTION = "notifier: the shared SSE live tail"
"""The description of the hub's consumer (per-connection feeds have none)."""
Key = tuple[str, ...]
"""What a tap follows: ``("job", tenant, job_id)`` or ``("tenant", tenant)``."""


def job_key(tenant: str, job_id: str) -> Key:
    """The key of one job's events."""
    return ("job", tenant, job_id)


def tenant_key(tenant: str) -> Key:
    """The key of a tenant's job and upload events."""
    return ("tenant", tenant)


class Subscriber(Protocol):
    """What the hub offers events to (a :class:`~services.notifier.sse.tap.Tap`)."""

    def offer(self, item: Item) -> None:
        """Take ``item`` (never blocks)."""


class Hub:
    """One live subscription per process; :meth:`dispatch` hands each event to the taps of its keys."""

    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        stream: str,
        prefix: str,
        size: int,
        heartbeat_s: float,
        catch_up_batch: int = BATCH,
        unavailable: Callable[[], None] = unwatched,
    ) -> None:
        self.nc, self.js, self.stream, self.prefix = nc, js, stream, prefix
        self.unavailable = unavailable
        """Told each time NATS failed the feed or a tap's catch-up (the notifier's stuck-server watch)."""
        self.size, self.heartbeat_s, self.catch_up_batch = size, heartbeat_s, catch_up_batch
        self.direct = DirectGets()
        """Whether the stream answers direct gets: the taps' catch-ups read in batches if so."""
        self.taps: dict[Key, set[Subscriber]] = defaultdict(set)
        self.head = 0
        """The last stream sequence dispatched (or the stream's end when the feed was made)."""
        self.feeds = 0
        """How many times the feed was made for a first tap (not counting its recoveries)."""
        self._task: asyncio.Task[None] | None = None
        self._opened = asyncio.Event()
        """Set once the running feed's first consumer is made (from then on its events reach the taps)."""
        self._lock = asyncio.Lock()
        self._ending: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read whether the stream answers direct gets; the feed waits for a first tap (:meth:`follow`)."""
        info = await until_answered(lambda: self.js.stream_info(self.stream), f"read stream {self.stream}'s config")
        if not info.config.allow_direct:
            self.direct.refuse(self.stream)

    async def stop(self) -> None:
        """Stop reading."""
        async with self._lock:
            if self._task is not None:
                await cancel_and_wait([self._task])
                self._task = None

    async def follow(self, key: Key, tap: Subscriber) -> bool:
        """Offer ``key``'s events to ``tap`` from now on: once this returns, every event stored after it
        reaches ``tap`` (the feed made first, when none runs). ``False`` when the feed could not be made
        within :data:`~services.notifier.sse.feed.RECOVER_S` (NATS away: the tap ends, its client resumes)."""
        self.taps[key].add(tap)
        async with self._lock:
            if self._task is None:
                self._opened = asyncio.Event()
                self._task = asyncio.create_task(self._run(self._opened), name="sse-hub")
                self.feeds += 1
            if not self._opened.is_set():  # made now, or still trying (NATS away): never live before it is
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RECOVER_S):
                        await self._opened.wait()
            return self._opened.is_set()

    def remove(self, key: Key, tap: Subscriber) -> None:
        """Stop offering ``key``'s events to ``tap``; the feed ends with the last tap."""
        taps = self.taps.get(key)
        if taps is not None:
            taps.discard(tap)
            if not taps:
                del self.taps[key]
        if not self.taps and self._task is not None and (self._ending is None or self._ending.done()):
            self._ending = asyncio.create_task(self._end_if_unfollowed(), name="sse-hub-end")

    async def _end_if_unfollowed(self) -> None:
        async with self._lock:
            if not self.taps and self._task is not None:
                await cancel_and_wait([self._task])
                self._task = None

    @property
    def reading(self) -> bool:
        """Whether the feed runs (a tap follows, or the last one just went)."""
        return self._task is not None

    @property
    def connections(self) -> int:
        """Taps registered."""
        return sum(len(taps) for taps in self.taps.values())

    async def _run(self, opened: asyncio.Event) -> None:
        """Read from the stream's end (then, after a loss, from :attr:`head`), setting ``opened`` once
        the first consumer is made."""
        subjects = [f"{self.prefix}jobs.>", f"{self.prefix}uploads.>"]
        while True:
            new_only = not opened.is_set()
            feed = Feed(
                self.nc, self.js, self.stream, subjects, 0 if new_only else self.head, self.size, self.heartbeat_s,
                HUB_DESCRIPTION, new_only=new_only, unavailable=self.unavailable,
            )  # fmt: skip
            async with feed:
                if new_only:
                    await _first_open(feed)
                    if feed.opened.is_set():
                        self.head = feed.last_seq
                        opened.set()
                while not feed.gone:
                    if (item := await feed.get(None)) is not None:
                        self.dispatch(item)
                while not feed.queue.empty():
                    self.dispatch(feed.queue.get_nowait())
            log.warning("the shared SSE subscription is made anew after %d", self.head)
            await asyncio.sleep(RETRY_S)

    def dispatch(self, item: Item) -> None:
        """Offer ``item`` to every tap of its job and of its tenant."""
        self.head = max(self.head, item.seq)
        tokens = item.subject[len(self.prefix) :].split(".")
        if len(tokens) < 3:
            return
        keys = [tenant_key(tokens[1])]
        if tokens[0] == "jobs":
            keys.append(job_key(tokens[1], tokens[2]))
        for key in keys:
            for tap in list(self.taps.get(key, ())):
                tap.offer(item)


async def _first_open(feed: Feed) -> None:
    """Wait until ``feed`` made its first consumer, or is gone (it tried for :data:`RECOVER_S`)."""
    while not feed.opened.is_set() and not feed.gone:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RETRY_S):
                await feed.opened.wait()
