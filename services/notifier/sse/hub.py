"""The shared live tail of one notifier process: one JetStream consumer on JOBS, fanned out in memory.

:class:`Hub` reads every event of ``jobs.>`` and ``uploads.>`` stored after it started through one
:class:`~services.notifier.sse.feed.Feed` (an ephemeral pull consumer that survives its own loss: no gap,
no repeat), in stream order, and offers each to the :class:`~services.notifier.sse.tap.Tap` of every SSE
connection that follows its job (``("job", tenant, job_id)``) or its tenant (``("tenant", tenant)``).
The server's consumer count is therefore one per notifier process, whatever the number of
connections; each tap catches up from the stream itself (:mod:`services.notifier.sse.tap`) and takes
over the live tail by sequence. The hub also holds what the taps' catch-ups share: their batch size and
whether the stream answers direct gets (read from its config at start).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Protocol

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from services.common.nats.connection import cancel_and_wait
from services.notifier.sse.catch_up import BATCH, DirectGets
from services.notifier.sse.feed import RETRY_S, Feed, Item

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
    ) -> None:
        self.nc, self.js, self.stream, self.prefix = nc, js, stream, prefix
        self.size, self.heartbeat_s, self.catch_up_batch = size, heartbeat_s, catch_up_batch
        self.direct = DirectGets()
        """Whether the stream answers direct gets: the taps' catch-ups read in batches if so."""
        self.taps: dict[Key, set[Subscriber]] = defaultdict(set)
        self.head = 0
        """The last stream sequence dispatched."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Follow the stream from its current end (every tap catches up from the stream itself)."""
        info = await self.js.stream_info(self.stream)
        self.head = info.state.last_seq
        if not info.config.allow_direct:
            self.direct.refuse(self.stream)
        self._task = asyncio.create_task(self._run(), name="sse-hub")

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            await cancel_and_wait([self._task])

    def add(self, key: Key, tap: Subscriber) -> None:
        """Offer ``key``'s events to ``tap`` from now on."""
        self.taps[key].add(tap)

    def remove(self, key: Key, tap: Subscriber) -> None:
        """Stop offering ``key``'s events to ``tap``."""
        taps = self.taps.get(key)
        if taps is not None:
            taps.discard(tap)
            if not taps:
                del self.taps[key]

    @property
    def connections(self) -> int:
        """Taps registered."""
        return sum(len(taps) for taps in self.taps.values())

    async def _run(self) -> None:
        subjects = [f"{self.prefix}jobs.>", f"{self.prefix}uploads.>"]
        while True:
            feed = Feed(
                self.nc, self.js, self.stream, subjects, self.head, self.size, self.heartbeat_s, HUB_DESCRIPTION
            )
            async with feed:
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
