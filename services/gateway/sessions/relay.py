"""What the feed socket holds for its remote worker between reading the session's feed and sending it.

:class:`Relay` keeps the feed's items in order and never blocks the feed: for a worker that falls behind it
holds at most ``max_frames`` live frames and :data:`JOINTS_HELD` joint samples (the oldest go first, counted
in ``gpurelay_session_feed_dropped_total`` by ``item``); control and the backlog mark are never dropped.

A resumed session's worker asks for its memory back (``?restored_until=``: the frames up to that FRAMES
sequence are ones its lost predecessor had trained on, which it takes as ``restored``). Hundreds of them
come at once, so they do not count against ``max_frames`` (that bound would keep only the newest few);
they are bounded by their bytes instead, ``restored_max_bytes`` in all, the oldest dropped first
(``item="restored"``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Literal

from contracts.session_feed import FeedFrame, FeedJoints
from services.common.observability.metrics import SESSION_FEED_DROPPED
from services.common.session_feed import FeedItem

JOINTS_HELD = 4096
"""Joint samples the relay holds for a worker that falls behind (the oldest go first)."""
RESTORED_MAX_BYTES = 64 * 1024 * 1024
"""Default bound on the bytes of restored frames one relay holds."""
Kind = Literal["frame", "restored", "joints"]


class Relay:
    """Feed items waiting for the socket: frames and joints bounded, control never dropped."""

    def __init__(self, max_frames: int, restored_until: int = 0, restored_max_bytes: int = RESTORED_MAX_BYTES) -> None:
        self.max_frames, self.restored_until, self.restored_max_bytes = max_frames, restored_until, restored_max_bytes
        self.items: deque[tuple[FeedItem, bytes | None]] = deque()
        self.held: dict[Kind, int] = {"frame": 0, "restored": 0, "joints": 0}
        self.restored_bytes = self.dropped = 0
        self.ready = asyncio.Event()

    def kind(self, item: FeedItem) -> Kind | None:
        """What bound ``item`` counts against (``None``: control and the backlog mark, never dropped)."""
        if isinstance(item, FeedFrame):
            return "restored" if item.stream_seq <= self.restored_until else "frame"
        return "joints" if isinstance(item, FeedJoints) else None

    def put(self, item: FeedItem, data: bytes | None) -> None:
        """Called by the feed on the event loop; never blocks."""
        self.items.append((item, data))
        kind = self.kind(item)
        if kind is not None:
            self._count(kind, data, 1)
        if kind == "frame" and self.held["frame"] > self.max_frames:
            self._drop_oldest("frame")
        elif kind == "joints" and self.held["joints"] > JOINTS_HELD:
            self._drop_oldest("joints")
        while kind == "restored" and self.restored_bytes > self.restored_max_bytes and self.held["restored"] > 1:
            self._drop_oldest("restored")
        self.ready.set()

    def _count(self, kind: Kind, data: bytes | None, by: int) -> None:
        self.held[kind] += by
        if kind == "restored":
            self.restored_bytes += by * len(data or b"")

    def _drop_oldest(self, kind: Kind) -> None:
        for index, (item, data) in enumerate(self.items):
            if self.kind(item) == kind:
                del self.items[index]
                self._count(kind, data, -1)
                self.dropped += 1
                SESSION_FEED_DROPPED.labels(kind).inc()
                return

    async def take(self) -> tuple[FeedItem, bytes | None]:
        """The oldest waiting item (waits for one)."""
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        item, data = self.items.popleft()
        kind = self.kind(item)
        if kind is not None:
            self._count(kind, data, -1)
        return item, data
