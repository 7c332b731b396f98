"""An attempt's events fenced by its ``job.dispatched``: stored only while it is still the job's latest.

A local run knows the JOBS sequence of its attempt's ``job.dispatched``
(:attr:`~contracts.runs.RunRequest.dispatched_seq`). Every event it sends carries it as an expected last
subject sequence on that subject (:func:`~services.common.nats.publish.fence_headers`), so once the job is
dispatched again (its dispatcher stood still or its host was cut off, and another replica gave the
attempt up) JetStream stores nothing more of it: not a log line, a heartbeat, nor a second end.
:func:`publish_in_attempt` then raises :class:`AttemptSuperseded`, and the runtime stops the run.

A refusal is checked against the stream before it is believed: a clustered stream's leader also refuses
while a write of the fence's subject is in flight or its mark not yet cleared (10164, often the worker's
own event a moment ago: the mark is cleared after the ack is sent). While the fence still holds, the
publish is tried again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.envelope import EventEnvelope
from contracts.streams import JOBS
from contracts.subjects import Subjects
from services.common.nats.publish import RETRY_FOR_S, publish_fenced

RECHECK_PAUSE_S = (0.01, 1.0)
"""The first pause before a publish refused while its fence still holds is tried again, and the longest
(doubling in between): a write of the fence's subject in flight, or its mark not yet cleared, is gone in
milliseconds, or once the stream's quorum is back. It is tried for as long as a publish rides out NATS
being away (:data:`~services.common.nats.publish.RETRY_FOR_S`)."""


class AttemptSuperseded(Exception):
    """The attempt's ``job.dispatched`` is no longer the job's latest: nothing of it is stored any more."""


class FenceUndecided(Exception):
    """A fenced publish kept being refused while its fence held (a write of its subject stayed in flight)."""


async def publish_in_attempt(
    js: JetStreamContext,
    subjects: Subjects,
    subject: str,
    event: EventEnvelope,
    dispatched_seq: int,
    unavailable: Callable[[], None] | None = None,
) -> None:
    """Publish ``event`` on ``subject`` while ``dispatched_seq`` is its job's latest ``job.dispatched``, and
    wait for the stream's ack; :class:`AttemptSuperseded` once it is not, :class:`FenceUndecided` when it
    is refused with the fence still holding for longer than a publish rides out NATS being away."""
    deadline, pause = time.monotonic() + RETRY_FOR_S, RECHECK_PAUSE_S[0]
    while True:
        if await _publish_once(js, subjects, subject, event, dispatched_seq, unavailable):
            return
        if await _dispatched_since(js, subjects, event, dispatched_seq):
            raise AttemptSuperseded(f"{event.type} of {event.job_id} attempt {event.attempt}")
        if time.monotonic() + pause > deadline:
            raise FenceUndecided(f"{event.type} of {event.job_id}: refused while its fence still holds")
        await asyncio.sleep(pause)
        pause = min(RECHECK_PAUSE_S[1], pause * 2)


def _dispatched_subjects(subjects: Subjects, event: EventEnvelope) -> tuple[str, str]:
    """The job's ``job.dispatched`` subject as JOBS stores it (its slot token), then as published (a job
    dispatched before JOBS stored slot tokens: an upgrade)."""
    assert event.job_id is not None
    tenant, job_id = event.tenant, event.job_id
    return subjects.stored_job_event(tenant, job_id, "dispatched"), subjects.job_event(tenant, job_id, "dispatched")


async def _publish_once(
    js: JetStreamContext,
    subjects: Subjects,
    subject: str,
    event: EventEnvelope,
    dispatched_seq: int,
    unavailable: Callable[[], None] | None,
) -> bool:
    """One fenced publish of ``event`` (on each form of the fence's subject): whether it was stored (or had
    been: a duplicate)."""
    for fence_subject in _dispatched_subjects(subjects, event):
        if await publish_fenced(js, subject, event, (fence_subject, dispatched_seq), unavailable=unavailable):
            return True
    return False


async def _dispatched_since(js: JetStreamContext, subjects: Subjects, event: EventEnvelope, seq: int) -> bool:
    """Whether the job's latest ``job.dispatched`` in JOBS is another than ``seq``."""
    stream = subjects.ns.stream(JOBS)
    for fence_subject in _dispatched_subjects(subjects, event):
        with contextlib.suppress(NotFoundError):
            return (await js.get_last_msg(stream, fence_subject)).seq != seq
    return True
