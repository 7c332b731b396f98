"""A tap's catch-up read: a few message gets, then batches from a consumer of its own while the backlog lasts.

Most catch-ups are short (a job just submitted has an event or two): :data:`GETS_FIRST` ``next_by_subj``
message gets cost less than a consumer. A long one (a client resuming far back, a slow reader sent back
to the stream) reads through an ephemeral consumer (memory, no acks, the tap's subjects, from the
cursor) in batches of the room left in the tap's buffer, one ``no_wait`` pull each: a catch-up of
1,000 events costs about ten requests instead of a thousand. A pull that brings less than it asked for
ran out: the consumer had nothing more when the server answered, so every message stored before the
pull was sent has been read, and once its messages are handed out the reader says "nothing more"
without another pull, provided the tap's arming has not changed since the pull (``arming``: the
hand-over needs the tap armed from before that read on). The consumer is deleted when the catch-up
ends (and expires on its own after :data:`INACTIVE_S` if the process died), so consumers stay few.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.common.nats.long_pull import PullInbox

GETS_FIRST = 4
"""Reads of a catch-up made by message gets before it takes a consumer."""
INACTIVE_S = 30.0
PULL_WAIT_S = 5.0
"""How long a batch may take to arrive before the read is retried (``TimeoutError``)."""


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored message: its sequence, subject, bytes and headers."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None


class CatchUpReader:
    """The next stored message on any of ``subjects`` after a sequence (see the module docstring)."""

    def __init__(self, nc: NatsClient, js: JetStreamContext, stream: str, subjects: list[str]) -> None:
        self.nc, self.js, self.stream, self.subjects = nc, js, stream, subjects
        self.heads: dict[str, Stored | None] = {}
        """Per subject, the next message a get read ahead (kept while it is after the cursor)."""
        self.gets = 0
        self._consumer: str | None = None
        self._position = 0
        """The last sequence the consumer delivered (it delivers after it, in order)."""
        self._ready: deque[Stored] = deque()
        self._inbox: PullInbox | None = None
        self._ran_out: int | None = None
        """The tap's ``arming`` when the last pull ran out (``None``: it did not)."""

    async def next(self, after: int, room: int, arming: int = 0) -> Stored | None:
        """The first message after ``after``; ``None`` when the stream has none (yet). ``room``: how many
        the caller can take (a batch never holds more); ``arming``: the caller's arming count."""
        while self._ready and self._ready[0].seq <= after:
            self._ready.popleft()
        if self._ready:
            return self._ready.popleft()
        if self._ran_out is not None and self._ran_out == arming and self._position == after:
            self._ran_out = None
            return None  # the last pull found the end, and everything it brought is handed out
        if self.gets < GETS_FIRST and self._consumer is None:
            self.gets += 1
            return await self._get(after)
        return await self._pull(after, max(1, room), arming)

    async def _get(self, after: int) -> Stored | None:
        best: tuple[str, Stored] | None = None
        for subject in self.subjects:
            head = self.heads.get(subject)
            if head is None or head.seq <= after:
                try:
                    raw = await self.js.get_msg(self.stream, seq=after + 1, subject=subject, next=True)
                    head = Stored(raw.seq or 0, raw.subject or "", raw.data or b"", raw.headers)
                except NotFoundError:
                    head = None
                self.heads[subject] = head
            if head is not None and (best is None or head.seq < best[1].seq):
                best = (subject, head)
        if best is None:
            return None
        self.heads[best[0]] = None
        return best[1]

    async def _pull(self, after: int, batch: int, arming: int) -> Stored | None:
        if self._consumer is None or self._position != after:
            await self.close()
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1, ack_policy=AckPolicy.NONE,
                filter_subjects=self.subjects, mem_storage=True, inactive_threshold=INACTIVE_S, num_replicas=1,
            )  # fmt: skip
            self._consumer = (await self.js.add_consumer(self.stream, config=config)).name
            self._position = after
            self._inbox = PullInbox(self.nc, self.stream, self._consumer, bound=batch + 8)
        assert self._inbox is not None
        self._ran_out = None
        reply = await self._inbox.send({"batch": batch, "no_wait": True})
        try:
            async with asyncio.timeout(PULL_WAIT_S):
                while len(self._ready) < batch:
                    msg = await self._inbox.received.get()
                    if (msg.headers or {}).get("Status"):
                        if msg.subject == reply:
                            self._ran_out = arming  # nothing more was stored when the server answered
                            break
                        continue
                    meta = msg.metadata
                    self._ready.append(Stored(meta.sequence.stream, msg.subject, msg.data, msg.headers))
                    self._position = meta.sequence.stream
        except BaseException:
            await self.close()  # a consumer lost, or a cancel: made again from the cursor next time
            raise
        return self._ready.popleft() if self._ready else None

    async def close(self) -> None:
        """Delete the consumer, if one was made (its own expiry deletes it when this cannot)."""
        consumer, inbox, self._consumer, self._inbox = self._consumer, self._inbox, None, None
        self._ready.clear()
        self._ran_out = None
        if inbox is not None:
            await inbox.end()
        if consumer is not None:
            with contextlib.suppress(Exception):
                await self.js.delete_consumer(self.stream, consumer)
