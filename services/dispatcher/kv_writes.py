"""Reading what a KV bucket stored since a given point, for sweeps that learn from writes, not listings.

:func:`read_writes` makes one pull consumer on the bucket's stream: from ``after + 1`` (the stream
sequence of the last write a sweep read), or, at a sweep's first call (``after`` 0), each key's latest
entry as it stands. Every write (deletes too) goes to ``on_write`` in order; the sweep keeps only what
it needs, so its memory is bounded by its own candidates, not by the bucket.

Before that, one get of the first stored message at or after ``after + 1`` (``next_by_subj``) tells
whether there is anything to read: on an idle stack there is not, and the get (its request, reply and
API advisory) costs 3 messages where a consumer made to find nothing cost 5 (its creation, reply, API
advisory, its created and, when it expired, its deleted advisory), each sweep every 15 s.
"""

from __future__ import annotations

from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

READ_BATCH = 512
READ_TIMEOUT_S = 5.0


async def read_writes(kv: KeyValue, after: int, on_write: Callable[[str, Msg], None]) -> tuple[int, int]:
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
