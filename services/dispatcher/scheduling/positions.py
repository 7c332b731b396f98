"""Queue position and ETA of waiting jobs: ``job.position`` events, folded into the record's ``queue``.

A job's *position* is its place in its tenant's queue of its kind (the order the scheduler would
start them: the index's line, :mod:`~services.dispatcher.scheduling.lines`). Its *ETA* comes from the kind's
observed run times (:class:`RunTimes`, a moving median by kind and input size): the tenant's jobs
start at ``concurrency × share / median`` per second, where ``share`` is its weight over the
weights of the tenants with queued work, so position ``p`` starts in about
``p × median / (concurrency × share)`` seconds (or when it is due, if later).

A job's first place comes in its ``job.queued`` (:meth:`Positions.told_in_queued`: the place its entry
takes in the mirror as it is queued); ``job.position`` is published when a retry is queued, when that
place is bettered by the time the entry is in the queue, and, while it is among the first
``queue_position_top`` of its tenant's queue, as it moves up (after a start of that tenant, at most
once per ``queue_position_interval_s`` per kind and tenant: the starts in between coalesce, so the
fold sees at most ``top / interval`` such events per second and tenant). A replica publishes a job's position
only when it is lower than the last it published (so a feed never shows it going back; a higher
priority job arriving ahead holds it instead), each with the id ``{job}-a{n}-pos{p}``. The last place
of an entry is forgotten once the mirror has dropped it; one told before its entry is in the mirror
(its ``job.queued`` is published before the entry is made) is kept meanwhile, up to
:data:`UNSEEN_KEPT_S`, or an update between the two would forget it and tell the place again. For the
same reason a place told in ``job.queued`` counts the entries ahead of it that this replica told and is
still making (:meth:`Positions.made` ends that): a job submitted once an earlier one's ``job.queued``
was seen is not told a place one short.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from contracts.event_ids import attempt_event_id
from contracts.events.jobs import JobPositionPayload, JobQueuedPayload
from contracts.events.registry import EventType, make_event
from contracts.subjects import Namespace, Subjects
from services.common.nats.connection import cancel_and_wait, log_failure
from services.common.nats.publish import publish_event
from services.dispatcher.scheduling.queue import QueueIndex
from services.dispatcher.scheduling.queue_entries import QueueEntry
from services.dispatcher.scheduling.run_times import RunTimes, size_class

log = logging.getLogger(__name__)
UNSEEN_KEPT_S = 60.0
"""How long a place told before its entry was in the mirror is kept while the mirror lacks the entry."""


class Positions:
    """Publishes ``job.position`` for waiting jobs from this replica's mirror of the queue index."""

    def __init__(
        self,
        js: JetStreamContext,
        ns: Namespace,
        queue: QueueIndex,
        runtimes: RunTimes,
        concurrency: dict[str, int],
        weight: Callable[[str], float],
        top: int,
        interval_s: float,
    ) -> None:
        self.js, self.subjects, self.queue, self.runtimes = js, Subjects(ns), queue, runtimes
        self.concurrency, self.weight, self.top = concurrency, weight, top
        self.interval_s = interval_s
        self.published: dict[str, int] = {}
        """The last place told of each entry's job (its ``job.queued`` or ``job.position``)."""
        self._unseen: dict[str, float] = {}
        """Entries whose place was told before the mirror had them: when (monotonic)."""
        self._pending: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._making: dict[str, QueueEntry] = {}
        """Entries whose place ``job.queued`` told, whose KV create is not yet done (by key)."""

    def waiting(self, kind: str, tenant: str, first: int | None = None) -> list[QueueEntry]:
        """``tenant``'s unclaimed entries of ``kind`` in the order they would start (the ``first`` ones)."""
        return list(itertools.islice(self.queue.lines.line(kind, tenant), first))

    async def told_in_queued(self, entry: QueueEntry) -> JobQueuedPayload:
        """``job.queued`` for the entry about to be queued, with the place it will have and its ETA (so
        it needs no ``job.position`` of its own: :meth:`queued` then says only a better place)."""
        position = self.queue.lines.place_of(entry) + self._made_ahead(entry)
        self._making[entry.key] = entry  # until made(), which the caller owes however this ends
        eta = await self.eta_s(entry, position)
        self._told(entry.key, position)
        at = datetime.now(UTC) + timedelta(seconds=eta) if eta is not None else None
        return JobQueuedPayload(position=position, eta_s=eta, eta_at=at)

    def made(self, entry: QueueEntry) -> None:
        """The entry whose place :meth:`told_in_queued` told is made (in the mirror), or will not be."""
        self._making.pop(entry.key, None)

    def _made_ahead(self, entry: QueueEntry) -> int:
        """The entries of ``entry``'s line told and still being made, which the mirror lacks, ahead of it."""
        lines, mine = self.queue.lines, self.queue.lines.sort_key(entry)
        return sum(
            1
            for other in self._making.values()
            if (other.kind, other.tenant) == (entry.kind, entry.tenant)
            and other.key != entry.key
            and self.queue.revision(other.key) is None
            and lines.sort_key(other) < mine
        )

    async def queued(self, entry: QueueEntry, then: Callable[[], Awaitable[None]] | None = None) -> None:
        """Announce a newly queued attempt's position; ``then`` (its ticket's publish) is sent right
        behind it on the same connection, and both answers are awaited together (one round trip)."""
        position = self.queue.lines.position(entry.key)
        if position is None:  # in no line (the watch brought a claim or a delete meanwhile): counted last
            position = self.queue.lines.length(entry.kind, entry.tenant) + 1
        await self._announce(entry, position, then)

    def moved(self, kind: str, tenant: str) -> None:
        """One of ``tenant``'s jobs of ``kind`` started: update the first ones' positions (in the
        background, at most once per ``interval_s`` per kind and tenant: starts in between coalesce)."""
        if self.top <= 0 or (kind, tenant) in self._pending:
            return
        task = asyncio.create_task(self._update(kind, tenant))
        self._pending[kind, tenant] = task
        task.add_done_callback(lambda _: self._pending.pop((kind, tenant), None))

    async def stop(self) -> None:
        """Cancel the updates in flight."""
        await cancel_and_wait(list(self._pending.values()))

    async def _update(self, kind: str, tenant: str) -> None:
        await asyncio.sleep(self.interval_s)  # the starts meanwhile join this update
        self._pending.pop((kind, tenant), None)
        try:
            for index, entry in enumerate(self.waiting(kind, tenant, self.top)):
                await self._announce(entry, index + 1)
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            log_failure(log, exc, "queue positions of %s/%s not published", kind, tenant)
        self._forget_dropped()

    def _told(self, key: str, position: int) -> None:
        self.published[key] = position
        if self.queue.revision(key) is None:  # told before the mirror has it
            self._unseen[key] = time.monotonic()

    def _forget_dropped(self) -> None:
        """Forget the places of entries the mirror no longer holds (kept a while for one not yet in it)."""
        now = time.monotonic()
        for key in list(self.published):
            if self.queue.revision(key) is not None:
                self._unseen.pop(key, None)
            elif key not in self._unseen or now - self._unseen[key] >= UNSEEN_KEPT_S:
                del self.published[key]
                self._unseen.pop(key, None)

    async def eta_s(self, entry: QueueEntry, position: int) -> float | None:
        """Seconds until ``entry``, at ``position`` of its tenant's queue, should start."""
        median = await self.runtimes.median(entry.kind, size_class(entry.input_bytes))
        if median is None:
            return None
        tenants = {*self.queue.lines.tenants(entry.kind), entry.tenant}
        share = self.weight(entry.tenant) / sum(self.weight(t) for t in tenants)
        slots = max(1, self.concurrency.get(entry.kind, 1)) * share
        return round(max(position * median / slots, entry.not_before - time.time(), 0.0), 3)

    async def _announce(
        self, entry: QueueEntry, position: int, then: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        last = self.published.get(entry.key)
        if last is not None and position >= last:
            if then is not None:
                await then()
            return
        self._told(entry.key, position)
        eta = await self.eta_s(entry, position)
        at = datetime.now(UTC) + timedelta(seconds=eta) if eta is not None else None
        payload = JobPositionPayload(position=position, eta_s=eta, eta_at=at)
        event = make_event(
            EventType.JOB_POSITION, payload, tenant=entry.tenant, source="dispatcher", job_id=entry.job_id,
            kind=entry.kind, attempt=entry.attempt,
            event_id=attempt_event_id(entry.job_id, entry.attempt, f"pos{position}"),
        )  # fmt: skip
        announced = publish_event(self.js, self.subjects.job_event(entry.tenant, entry.job_id, "position"), event)
        if then is None:
            await announced
            return
        # tasks start in creation order, each writing its publish before it first waits
        await asyncio.gather(asyncio.ensure_future(announced), asyncio.ensure_future(then()))
