"""Reading what a KV bucket stored since a given point, for sweeps that learn from writes, not listings.

:func:`read_writes` makes one pull consumer on the bucket's stream: from ``after + 1`` (the stream
sequence of the last write a sweep read), or, at a sweep's first call (``after`` 0), each key's latest
entry as it stands. Every write (deletes too) goes to ``on_write`` in order; the sweep keeps only what
it needs, so its memory is bounded by its own candidates, not by the bucket.

Before that, one get of the first stored message at or after ``after + 1`` (``next_by_subj``) tells
whether there is anything to read: on an idle stack there is not, and the get (its request, reply and
API advisory) costs 3 messages where a consumer made to find nothing cost 5 (its creation, reply, API
advisory, its created and, when it expired, its deleted advisory), each sweep every 15 s.

The sweeps of one replica that learn from KV ``jobs`` (:class:`~services.dispatcher.scheduling.sweeper.CreatedSweeper`,
:class:`~services.dispatcher.fold.audit.FoldAudit`) share one :class:`WriteLog`: whichever sweeps reads
what was stored since either read it, for both, so each write is delivered to a replica once, not once
per sweep (issue 34: four deliveries of every write per job with 2 replicas, then two).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

READ_BATCH = 512
READ_TIMEOUT_S = 5.0


OnWrite = Callable[[str, Msg], None]


class WriteLog:
    """The writes a bucket stores, read for every reader (:meth:`add`) by whichever asks first (:meth:`read`)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self.readers: list[OnWrite] = []
        self.scanned = 0
        """The stream sequence of the last write read."""
        self._lock = asyncio.Lock()

    def add(self, on_write: OnWrite) -> None:
        """Hand every write read from now on to ``on_write`` too (the first read: every key as it stands)."""
        self.readers.append(on_write)

    async def read(self) -> int:
        """Read what the bucket stored since the last read (of any reader), in order, handing each write to
        every reader; how many were read. Two reads at once read in turn (the second, little or nothing)."""
        async with self._lock:
            self.scanned, read = await read_writes(self.kv, self.scanned, self._each)
            return read

    def _each(self, key: str, msg: Msg) -> None:
        for on_write in self.readers:
            on_write(key, msg)


async def read_writes(kv: KeyValue, after: int, on_write: OnWrite) -> tuple[int, int]:
    """Call ``on_write(key, msg)`` for every write ``kv`` stored after stream sequence ``after`` (``0``:
    each key as it stands); the sequence of the last write read (``after`` when none), and how many."""
    js, stream, prefix = kv._js, kv._stream, kv._pre  # nats-py keeps them private
    if not await _stored_after(js, stream, prefix, after):
        return after, 0
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True)
    if after:
        config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, after + 1
    else:
        config.deliver_policy = DeliverPolicy.LAST_PER_SUBJECT
    config.filter_subject = f"{prefix}>"
    info = await js.add_consumer(stream, config)  # its answer counts what waits: no info request
    last, read, remaining = after, 0, info.num_pending or 0
    if not remaining:  # deleted since the get (or only deletes, when ``after`` is 0): it expires unread
        return last, read
    sub = await js.pull_subscribe_bind(info.name, stream=stream)
    try:
        while remaining > 0:
            for msg in await sub.fetch(min(remaining, READ_BATCH), timeout=READ_TIMEOUT_S):
                remaining, read = remaining - 1, read + 1
                last = max(last, msg.metadata.sequence.stream)
                on_write(msg.subject[len(prefix) :], msg)
    finally:
        await sub.unsubscribe()
    return last, read


async def _stored_after(js: JetStreamContext, stream: str, prefix: str, after: int) -> bool:
    """Whether ``stream`` holds a write of the bucket after sequence ``after`` (one message get)."""
    try:
        await js.get_msg(stream, seq=after + 1, subject=f"{prefix}>", next=True)
    except NotFoundError:
        return False
    return True
