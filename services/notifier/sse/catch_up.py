"""A tap's catch-up read: batches of direct gets, up to an end the stream leader set first.

A catch-up *round* (from the tap's cursor until it finds nothing more) begins, the tap already armed,
by asking the stream leader where it ends: the last sequence on the tap's subject (a message get by
``last_by_subj``); with two subjects, as a tenant stream has, the stream's last sequence, then each
subject's. Everything stored before that lies at or below this *horizon*; everything stored after it
reaches the tap live (it was armed first), so the round reads exactly its subjects' messages up to the
horizon, and what a batch brings past it is left to the hand-over.

Each subject is read from the cursor by direct gets in batches (:func:`direct_batch`) of at most the
room in the tap's buffer and ``batch``, merged by sequence: a catch-up of 1,000 events costs about
five requests. Any replica may answer a direct get, and one that lags (a node just resumed) brings
fewer than are stored, or none: a subject is done only once it has reached its end, never because a
batch came back short. A short batch is read and the next one asked; one that brings nothing before
the end is answered by the leader instead (:func:`leader_next`: its next message, so every such retry
moves on; none before the end, as when messages were removed by age, ends the subject), and the next
batch waits 50 ms first, doubling up to 1 s while replicas keep lagging. A paused replica's batch that
does not come within :data:`BATCH_WAIT_S` is the same. NATS errors reach the tap, which retries them
for 30 s and then ends the stream with a warning (the client resumes with ``Last-Event-ID``).

Without ``allow_direct`` on the stream (declared before it; ``gpurelay nats declare`` again adds it)
reads are one leader message get per event (:class:`OneByOne`), with a warning logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from services.notifier.sse.direct_get import NoDirectGets, Stored, direct_batch, leader_last, leader_next

log = logging.getLogger(__name__)
BATCH = 256
"""Messages one direct get asks for at most (``GPURELAY_SSE_CATCH_UP_BATCH``)."""
BATCH_WAIT_S = 2.0
"""How long a batch may take to come (a paused replica's never does) before the leader is asked."""
REST_FIRST_S, REST_MAX_S = 0.05, 1.0
"""How long the next batch waits after a lagging replica's answer: the first time, and at most (doubling)."""


@dataclass
class DirectGets:
    """Whether the stream answers direct gets (``allow_direct``): one per process, warned about once."""

    allowed: bool = True

    def refuse(self, stream: str) -> None:
        """The stream does not answer them: catch-ups read one message get per event from now on."""
        if self.allowed:
            log.warning(
                "stream %s lacks allow_direct: SSE catch-ups read one message get per event; run "
                "`gpurelay nats declare` and restart the notifiers to read them in batches",
                stream,
            )
        self.allowed = False


@dataclass
class Part:
    """One subject's part of a round: read up to ``pos``, due up to ``end``, and what was read ahead."""

    subject: str
    pos: int
    end: int
    ready: deque[Stored] = field(default_factory=deque)

    def take(self, msg: Stored, horizon: int) -> None:
        """A message after ``pos`` (all of the subject's before it read): kept when at or below the horizon."""
        self.pos = max(self.pos, msg.seq)
        if msg.seq <= horizon:
            self.ready.append(msg)


class OneByOne:
    """The next stored message on any of ``subjects`` after a sequence, one leader message get each."""

    def __init__(self, js: JetStreamContext, stream: str, subjects: list[str]) -> None:
        self.js, self.stream, self.subjects = js, stream, subjects
        self.heads: dict[str, Stored | None] = {}
        """Per subject, the next message read ahead (kept while it is after the cursor)."""

    async def next(self, after: int, room: int = 1) -> Stored | None:
        """The first message after ``after`` on any subject; ``None`` when the stream has none (yet)."""
        best: tuple[str, Stored] | None = None
        for subject in self.subjects:
            head = self.heads.get(subject)
            if head is None or head.seq <= after:
                head = self.heads[subject] = await leader_next(self.js, self.stream, subject, after + 1)
            if head is not None and (best is None or head.seq < best[1].seq):
                best = (subject, head)
        if best is None:
            return None
        self.heads[best[0]] = None
        return best[1]


class CatchUpReader:
    """The next stored message on any of ``subjects`` after a sequence, read in batches (module docstring)."""

    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        stream: str,
        subjects: list[str],
        batch: int = BATCH,
        direct: DirectGets | None = None,
    ) -> None:
        self.nc, self.js, self.stream, self.subjects, self.batch = nc, js, stream, subjects, batch
        self.direct = direct if direct is not None else DirectGets()
        self.one_by_one = OneByOne(js, stream, subjects)
        self.horizon = 0
        """The round's horizon: it reads up to this stream sequence; what was stored after comes by the hand-over."""
        self.lagging = 0
        """Batches that came back with nothing before their subject's end (a lagging or paused replica)."""
        self._round: list[Part] | None = None
        self._rest_s, self._direct_at = REST_FIRST_S, 0.0

    async def next(self, after: int, room: int = BATCH) -> Stored | None:
        """The first message after ``after`` on any subject, at most ``room`` read ahead per subject;
        ``None`` once every message stored before the round began has been read (the round ends)."""
        if not self.direct.allowed:
            self._round = None
            return await self.one_by_one.next(after)
        try:
            return await self._next(after, max(1, min(self.batch, room)))
        except NoDirectGets:
            self.direct.refuse(self.stream)
            self._round = None
            return await self.one_by_one.next(after)

    async def _next(self, after: int, count: int) -> Stored | None:
        if self._round is None:
            self._round = await self.begin(after)
        for part in self._round:
            while part.ready and part.ready[0].seq <= after:
                part.ready.popleft()
            part.pos = max(part.pos, after)
            while not part.ready and part.pos < part.end:
                await self._read(part, count)
        heads = [part for part in self._round if part.ready]
        if not heads:
            self._round = None  # the next read begins a round: the leader is asked again
            return None
        return min(heads, key=lambda part: part.ready[0].seq).ready.popleft()

    async def begin(self, after: int) -> list[Part]:
        """A round's parts: each subject's end, as the leader has it now (the horizon first)."""
        if len(self.subjects) == 1:
            self.horizon = await leader_last(self.js, self.stream, self.subjects[0])
            return [Part(self.subjects[0], after, self.horizon)]
        self.horizon = (await self.js.stream_info(self.stream)).state.last_seq
        ends = [min(await leader_last(self.js, self.stream, subject), self.horizon) for subject in self.subjects]
        return [Part(subject, after, end) for subject, end in zip(self.subjects, ends, strict=True)]

    async def _read(self, part: Part, count: int) -> None:
        """Read on in ``part`` (nothing read ahead, short of its end): a batch; when it brings nothing, the
        leader's next message, and the next batch rests first. Each call reads or ends the part."""
        loop = asyncio.get_running_loop()
        if (rest := self._direct_at - loop.time()) > 0:
            await asyncio.sleep(rest)
        for msg in await self.batch_of(part.subject, part.pos + 1, count):
            if msg.seq > part.pos:
                part.take(msg, self.horizon)
        if part.ready or part.pos >= part.end:
            self._rest_s = REST_FIRST_S
            return
        self.lagging += 1  # nothing before the end: a replica behind the leader answered
        self._direct_at = loop.time() + self._rest_s
        self._rest_s = min(REST_MAX_S, self._rest_s * 2)
        following = await leader_next(self.js, self.stream, part.subject, part.pos + 1)
        if following is None:
            part.pos = max(part.pos, part.end)  # the leader has nothing more: removed (max age)
        else:
            part.take(following, self.horizon)

    async def batch_of(self, subject: str, start: int, count: int) -> list[Stored]:
        """One direct get batch (the seam a test replaces with a lagging replica's answers)."""
        return await direct_batch(self.nc, self.stream, subject, start, count, BATCH_WAIT_S)
