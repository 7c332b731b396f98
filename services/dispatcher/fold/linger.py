"""A fold batch of only progress-like events waits a little for more, so a burst costs one record write.

A worker sends ``job.progress`` (and logs, heartbeats; the scheduler queue positions) in bursts, each
a batch of its own when they come apart, and each batch writes the job's record (a KV write, its reply
and the bucket's republish: 3 of the ~11 messages such an event cost, issue 34). These events change no
status and have no reaction, and followers read them from JOBS, not from the record, so a batch of
nothing else waits up to ``fold_linger_s`` for more: what comes is folded with it, one write per job.
A job's ``job.queued`` and its launch's ``job.dispatched`` and ``job.started`` wait too: on a free slot
they come within milliseconds, and the worker's first progress (a short job's end) follows, so a
queueing and launch is one write, not two to four; the record shows them at most ``fold_linger_s``
later, while the stream (SSE, webhooks) has them at once (a claim that finds the record still
``created`` starts the attempt: its queue entry says the job was queued). A job's ``job.artifact``
waits as well: a workload stores its files in a burst at its end, its ``job.succeeded`` right after
(a lap_compare's four files were three writes of their own), and clients read artifacts from the
record once the job has ended; so do a live session's ``session.result`` and ``session.alert``,
chunks the record only counts (a snapshot does not wait: the live view fetches it as soon as the
record holds it). Any other event ends the wait at once (a job's creation, end, retry or cancel is
never held back), and so does a full batch.
When the partition's open request runs out first, one more request covers the rest of the wait, so
where a request happened to end does not split a burst; a partition letting go of its pin waits on
the open request alone, not to hold up the hand-over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from contracts.events.registry import EventType, job_event_name
from contracts.subjects import event_token

LINGERING = frozenset(
    job_event_name(t)
    for t in (
        EventType.JOB_PROGRESS,
        EventType.JOB_LOG,
        EventType.JOB_HEARTBEAT,
        EventType.JOB_POSITION,
        EventType.JOB_QUEUED,
        EventType.JOB_DISPATCHED,
        EventType.JOB_STARTED,
        EventType.JOB_ARTIFACT,
        EventType.SESSION_RESULT,
        EventType.SESSION_ALERT,
    )
)
"""The subject tokens of the events a batch may wait for more of (a fold subject ends with one)."""
Pull = Callable[[int, float], Awaitable[list[Msg]]]
"""Up to ``n`` more events from the open request, waiting up to ``wait_s`` for the first."""


def lingers(msgs: list[Msg]) -> bool:
    """Whether ``msgs`` are all :data:`LINGERING` events."""
    return all(event_token(msg.subject) in LINGERING for msg in msgs)  # a stored subject ends with its slot


async def linger(pull: Pull, room: int, linger_s: float, renew: bool = False) -> list[Msg]:
    """What ``pull`` brings within ``linger_s`` (up to ``room`` events), until a pull brings nothing or
    an event that is not :data:`LINGERING`. With ``renew``, a pull that brings nothing before the
    wait is over (the open request ran out) is followed by one more, which lasts the rest of the
    wait. A cancel ends the wait, not the batch: what came is returned, to be folded and acked, and
    the caller's loop raises the cancel (``cancel_requested``)."""
    more: list[Msg] = []
    deadline = time.monotonic() + linger_s
    with contextlib.suppress(asyncio.CancelledError):
        while (left := deadline - time.monotonic()) > 0 and len(more) < room:
            got = await pull(room - len(more), left)
            more += got
            if got and lingers(got):
                continue
            if got or not renew or deadline - time.monotonic() <= 0:
                break
            renew = False  # one request more: it lasts until the deadline
    return more
