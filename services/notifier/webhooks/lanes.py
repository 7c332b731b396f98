"""Per-job order lanes within one endpoint's delivery queue.

A message is attempted only when no older message of its job (by stream sequence) is unfinished,
so one endpoint receives one job's events in stream order, and a delivery waiting for a retry holds
back only that job's later deliveries, never other jobs'. A (re)started delivery first learns which
jobs may have unfinished messages it has not seen (:func:`start_lanes`: the consumer's ack-pending
range, read from the stream) and holds those jobs until it has.

The attempts in flight of one endpoint's delivery run several jobs at once, each job one at a time:
:class:`Flight` starts held messages whose lane is free (:meth:`Lanes.ready`:
no older message of the job unfinished, and an attempt in flight is unfinished), oldest first, up to
``webhook_endpoint_concurrency`` at once and no faster than ``webhook_endpoint_rate_per_s`` (0: no
limit). Per-job order is therefore kept while different jobs' deliveries overlap: a receiver answering
in 50 ms gets up to ``concurrency`` / 0.05 s deliveries per second instead of 20.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from services.common.webhook_queue import H_EVENT, H_JOB

STARTUP_SCAN_MAX = 10_000
"""The longest ack-pending range read at start; a longer one holds every lane (``strict``)."""


def lane_key(headers: dict[str, str]) -> str:
    """The order lane of a delivery: its job, or the event itself when it has no job (no order needed)."""
    job = headers.get(H_JOB)
    return f"job:{job}" if job else f"event:{headers.get(H_EVENT, '')}"


@dataclass
class Lanes:
    """Per-job order within one endpoint queue, for one delivery run.

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

    def all_known(self, num_ack_pending: int, answered: int) -> None:
        """The consumer's ack-pending count is no more than what this run tracks and has not answered:
        nothing unseen is left. ``answered``: tracked messages whose attempt sent its ack (or NAK) by the
        time the count came; the server may have counted that ack, and without it an unseen message
        would pass for one of those (its job's next event then went first: seen in CI)."""
        if self.unseen and num_ack_pending <= self.outstanding - answered:
            self.unseen = 0


async def start_lanes(js: JetStreamContext, stream: str, subject: str, info: ConsumerInfo) -> Lanes:
    """Lanes for a (re)started delivery: which lanes may have unacked messages it has not seen."""
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
            raw = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            break
        if raw.seq is None or raw.seq > lanes.delivered_floor:
            break
        lanes.suspect.setdefault(lane_key(raw.headers or {}), []).append(raw.seq)
        seq, scanned = raw.seq + 1, scanned + 1
    return lanes


class Heartbeat:
    """Keeps held messages and those being attempted from being redelivered (``in_progress``) while they
    wait in memory or for their endpoint: a redelivery of a message under way was attempted a second
    time at once (an attempt slowed by NATS past the ack wait, as on a lossy link)."""

    def __init__(self, lanes: Lanes, flight: Flight, every_s: float, now: float) -> None:
        self.lanes, self.flight, self.every_s, self.last = lanes, flight, every_s, now

    @property
    def beating(self) -> bool:
        """Whether any message is kept alive so."""
        return bool(self.lanes.held or self.flight.msgs)

    async def maybe(self, now: float) -> None:
        """Beat if ``every_s`` has passed since the last beat."""
        if now - self.last < self.every_s:
            return
        for msg in [*self.lanes.held.values(), *self.flight.msgs.values()]:
            if not msg.is_acked:  # an attempt's ack or NAK went first: a beat now would undo a NAK's delay
                with contextlib.suppress(Exception):
                    await msg.in_progress()
        self.last = asyncio.get_running_loop().time()


class Flight:
    """Attempts running for one endpoint queue, by task, each with its message's stream sequence."""

    def __init__(self, concurrency: int, rate_per_s: float) -> None:
        self.concurrency = concurrency
        self.gap_s = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.running: dict[asyncio.Task[bool], int] = {}
        self.msgs: dict[int, Msg] = {}
        """The message of each attempt running, by stream sequence."""
        self.next_at = 0.0
        """The earliest (loop) time the pace allows the next start."""

    def answered(self) -> int:
        """Attempts whose message was acked, NAKed or terminated and that are not settled yet (still
        counted in the lanes; a NAKed one is still pending on the consumer, so counting it is only careful)."""
        return sum(1 for msg in self.msgs.values() if msg.is_acked)

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
            msg = self.msgs[seq] = lanes.held.pop(seq)
            task = asyncio.ensure_future(handle(msg))
            self.running[task] = seq
            if self.gap_s:
                self.next_at = max(self.next_at, now) + self.gap_s

    def settle(self, done: Iterable[asyncio.Future[Any]], lanes: Lanes) -> None:
        """Attempts that ended: a finished (acked or terminated) message moves its lane on; a failed
        attempt's error is raised (the delivery is restarted; its message is redelivered)."""
        for task in done:
            seq = self.running.pop(task, None)  # type: ignore[call-overload]  # a task of another kind: None
            if seq is None:
                continue
            self.msgs.pop(seq, None)
            if task.cancelled():
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
        self.msgs.clear()
