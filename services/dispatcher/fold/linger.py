"""A fold batch of only progress-like events waits a little for more, so a burst costs one record write.

A worker sends ``job.progress`` (and logs, heartbeats; the scheduler queue positions) in bursts, each
a batch of its own when they come apart, and each batch writes the job's record (a KV write, its reply
and the bucket's republish: 3 of the ~11 messages such an event cost, issue 34). These events change no
status and have no reaction, and followers read them from JOBS, not from the record, so a batch of
nothing else waits up to ``fold_linger_s`` for more on the partition's open request: what comes is
folded with it, one write per job. Any other event ends the wait at once (a status change is never
held back), and so do a full batch and the end of the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from contracts.events.registry import EventType, job_event_name

LINGERING = frozenset(
    job_event_name(t)
    for t in (EventType.JOB_PROGRESS, EventType.JOB_LOG, EventType.JOB_HEARTBEAT, EventType.JOB_POSITION)
)
"""The subject tokens of the events a batch may wait for more of (a fold subject ends with one)."""
Pull = Callable[[int, float], Awaitable[list[Msg]]]
"""Up to ``n`` more events from the open request, waiting up to ``wait_s`` for the first."""


def lingers(msgs: list[Msg]) -> bool:
    """Whether ``msgs`` are all :data:`LINGERING` events."""
    return all(msg.subject.rsplit(".", 1)[-1] in LINGERING for msg in msgs)


async def linger(pull: Pull, room: int, linger_s: float) -> list[Msg]:
    """What ``pull`` brings within ``linger_s`` (up to ``room`` events), until a pull brings nothing or
    an event that is not :data:`LINGERING`. A cancel ends the wait, not the batch: what came is
    returned, to be folded and acked, and the caller's loop raises the cancel (``cancel_requested``)."""
    more: list[Msg] = []
    deadline = time.monotonic() + linger_s
    with contextlib.suppress(asyncio.CancelledError):
        while (left := deadline - time.monotonic()) > 0 and len(more) < room:
            got = await pull(room - len(more), left)
            more += got
            if not got or not lingers(got):
                break
    return more
