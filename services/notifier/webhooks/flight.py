"""The attempts in flight of one endpoint's delivery: several jobs at once, each job one at a time.

:class:`Flight` starts held messages whose lane is free (:meth:`~services.notifier.webhooks.lanes.Lanes.ready`:
no older message of the job unfinished, and an attempt in flight is unfinished), oldest first, up to
``webhook_endpoint_concurrency`` at once and no faster than ``webhook_endpoint_rate_per_s`` (0: no
limit). Per-job order is therefore kept while different jobs' deliveries overlap: a receiver answering
in 50 ms gets up to ``concurrency`` / 0.05 s deliveries per second instead of 20.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from nats.aio.msg import Msg

from services.notifier.webhooks.lanes import Lanes


class Flight:
    """Attempts running for one endpoint queue, by task, each with its message's stream sequence."""

    def __init__(self, concurrency: int, rate_per_s: float) -> None:
        self.concurrency = concurrency
        self.gap_s = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.running: dict[asyncio.Task[bool], int] = {}
        self.next_at = 0.0
        """The earliest (loop) time the pace allows the next start."""

    @property
    def tasks(self) -> list[asyncio.Task[bool]]:
        """The attempts running."""
        return list(self.running)

    def pace_s(self, now: float, lanes: Lanes) -> float | None:
        """Seconds until the pace lets a waiting message start; ``None``: the pace holds nothing back."""
        if self.gap_s and lanes.held and len(self.running) < self.concurrency and now < self.next_at:
            return self.next_at - now
        return None

    def start_ready(self, lanes: Lanes, now: float, handle: Callable[[Msg], Awaitable[bool]]) -> None:
        """Start every held message whose lane is free, oldest first, within the concurrency and the pace."""
        looked: set[str] = set()
        for seq in sorted(lanes.held):
            if len(self.running) >= self.concurrency or (self.gap_s and now < self.next_at):
                return
            lane = lanes.lane_of[seq]
            if lane in looked:
                continue  # only the oldest held message of a lane can be ready
            looked.add(lane)
            if not lanes.ready(seq):
                continue
            task = asyncio.ensure_future(handle(lanes.held.pop(seq)))
            self.running[task] = seq
            if self.gap_s:
                self.next_at = max(self.next_at, now) + self.gap_s

    def settle(self, done: Iterable[asyncio.Future[Any]], lanes: Lanes) -> None:
        """Attempts that ended: a finished (acked or terminated) message moves its lane on; a failed
        attempt's error is raised (the delivery is restarted; its message is redelivered)."""
        for task in done:
            seq = self.running.pop(task, None)  # type: ignore[call-overload]  # a task of another kind: None
            if seq is None or task.cancelled():
                continue
            if (error := task.exception()) is not None:
                raise error
            if task.result():
                lanes.finish(seq)

    def cancel(self) -> None:
        """Cancel every attempt (their messages are redelivered after the ack wait)."""
        for task in self.running:
            task.cancel()

    async def close(self) -> None:
        """Wait for the attempts still running."""
        await asyncio.gather(*self.running, return_exceptions=True)
        self.running.clear()
