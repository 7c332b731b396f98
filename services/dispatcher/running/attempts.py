"""Running attempts: a dispatch ticket in, a terminal or ``retrying`` event out.

:meth:`Attempts.on_ticket` takes a ticket (a slot of its kind), asks the
:class:`~services.dispatcher.scheduling.scheduler.Scheduler` which queued attempt fills it (fair share across
tenants, priority within one), and holds the ticket, un-acked, while that attempt runs; the
attempt's queue entry is dropped and the ticket acked when it ends, which frees the slot (a live session's
lost attempt frees it once its resume is due, so that the resume fills it). Each held attempt has a
supervisor task whose :class:`~services.dispatcher.running.runner.Runner` launches the run (every stage in
turn for a pipeline) and waits for the first of: the run's outcome, a crash (the pool sees it at once),
the route's timeout, missed heartbeats, a cancel request, or the job ending elsewhere. The record it
watches is followed as KV stores it (:mod:`services.dispatcher.running.held_records`: a subscription to
the job's republished revisions, made before the record is read). A ticket redelivered after a
dispatcher died finds its job already dispatched and is *adopted*: supervised from the record alone
(heartbeats, timeout, cancel by call id), never run a second time.

Each attempt is a span in the job's trace (the ticket's headers carry it), handed on to the worker in
``RunRequest.trace``; its queue wait and run time are observed (:mod:`services.dispatcher.observe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from nats.aio.msg import Msg
from pydantic import ValidationError

from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.route_table import Route
from services.common.nats.connection import cancel_and_wait, log_failure
from services.common.observability import tracing
from services.dispatcher.consumers import PoisonMessage
from services.dispatcher.job_events import JobEvents
from services.dispatcher.observe import observe_attempt, observe_launch
from services.dispatcher.running.backends import Backend
from services.dispatcher.running.hearing import Hearing, since_stamp
from services.dispatcher.running.held_records import Follower, HeldRecords
from services.dispatcher.running.runner import Runner
from services.dispatcher.running.supervision import Held
from services.dispatcher.running.tickets import Ticket
from services.dispatcher.scheduling.queue_entries import entry_key
from services.dispatcher.scheduling.scheduler import Decision, Scheduler
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.store import JobStore

log = logging.getLogger(__name__)
_S = JobStatus
RESUME_QUEUED_S = 5.0
"""How long a lost session's slot waits, past the backoff, for the fold to queue its resume."""


class Attempts:
    """The attempts this replica runs or supervises."""

    def __init__(
        self,
        settings: DispatcherSettings,
        routes: dict[str, Route],
        backends: dict[str, Backend],
        store: JobStore,
        events: JobEvents,
        scheduler: Scheduler,
        records: HeldRecords,
        hearing: Hearing | None = None,
    ) -> None:
        self.settings, self.routes, self.backends = settings, routes, backends
        self.store, self.events, self.scheduler, self.records = store, events, scheduler, records
        self.held: dict[tuple[str, int], Held] = {}
        silence = settings.heartbeat_interval_s * settings.heartbeat_misses
        self.runner = Runner(settings, events, silence, hearing)
        """Launches each attempt's stages, or watches one run elsewhere, and concludes it (``hearing``: what a
        silence is confirmed against before it is called; ``None``: the record alone)."""

    # -- tickets ----------------------------------------------------------------------------
    async def on_ticket(self, body: bytes, msg: Msg) -> None:
        """Fill the slot a ticket holds: start, adopt or drop the attempt the scheduler gives it (the
        subscriber waits here for local capacity)."""
        try:
            token = Ticket.model_validate_json(body)
        except ValidationError as exc:
            raise PoisonMessage(f"not a valid dispatch ticket: {exc}") from exc
        if token.not_before > time.time():  # a backoff: the top-up brings a ticket when it is due
            await msg.ack()
            return
        # Most tickets claim their own attempt: its record is followed, and read, while the claim is made.
        follower = await self.records.follow(token.tenant, token.job_id)
        reading = asyncio.ensure_future(self.records.read(follower))
        try:
            meta = msg.metadata
            decision = await self.scheduler.take(token.kind, meta.sequence.stream, (meta.num_delivered or 1) > 1)
            ticket = decision.entry.ticket() if decision.entry is not None else None
            if ticket is not None and (ticket.tenant, ticket.job_id) != (token.tenant, token.job_id):
                _discard(reading)
                await self.records.stop(follower)
                follower = await self.records.follow(ticket.tenant, ticket.job_id)
                reading = asyncio.ensure_future(self.records.read(follower))
            if ticket is None:
                if (meta.num_delivered or 1) > 1:  # rare (after a fault): said, so a claim it leaves can be traced
                    log.warning("ticket %d (delivery %d) found no attempt to claim; acked",
                                meta.sequence.stream, meta.num_delivered)  # fmt: skip
                await msg.ack()
            elif (held := self.held.get((ticket.key, ticket.attempt))) is not None:
                await _held_again(held, msg)
            elif not await self._fill(ticket, decision, msg, follower, *(record := await reading)):
                if not decision.fresh:
                    log.warning("ticket %d (delivery %d): attempt %d is not run (its record: %s); its entry is dropped",
                                meta.sequence.stream, meta.num_delivered, ticket.attempt,
                                record[0].status if record[0] else "none", extra={"job_id": ticket.job_id})  # fmt: skip
                await self._drop(decision, msg)
        finally:
            _discard(reading)
            if not any(held.follower is follower for held in self.held.values()):
                await self.records.stop(follower)

    async def _fill(
        self,
        ticket: Ticket,
        decision: Decision,
        msg: Msg,
        follower: Follower,
        record: JobRecord | None,
        revision: int | None,
    ) -> bool:
        """Start or adopt the claimed attempt (held from now on); ``False`` when there is nothing to run."""
        route = self.routes.get(ticket.kind)
        if record is None or record.terminal or route is None:
            return False
        starting = (record.status is _S.QUEUED and ticket.attempt == record.attempt) or (
            record.status is _S.RETRYING and ticket.attempt == record.attempt + 1
        )
        # A fresh claim needs no look at the stream: its entry exists, so job.queued was published
        # before it (the reactions queue a job after that), and no token has launched it.
        if record.status is _S.CREATED and ticket.attempt == 1:  # queued; the record lags the stream
            starting = decision.fresh or await self.events.last(record, "queued") is not None
        adopting = record.status in (_S.DISPATCHED, _S.RUNNING) and ticket.attempt == record.attempt
        launched = starting and not decision.fresh
        dispatched_at = await self.events.dispatched_at(record, ticket.attempt) if launched else None
        if dispatched_at is not None:  # the record lags the stream: a replica that died launched it
            starting, adopting = False, True
        if not (starting or adopting) or (starting and record.cancel_requested):
            return False  # stale, or the fold cancels it
        held = Held(ticket, msg, record, route, revision=revision or 0, claim=decision, follower=follower)
        follower.hand_to(held.offer)  # a newer revision than the one read, and every later one
        if adopting:  # its age by the stamps another replica and its worker left (cross-host: wall clock)
            when = dispatched_at or record.timings.dispatched_at
            held.began = since_stamp(when.timestamp()) if when else time.monotonic()
            signs = [t.timestamp() for t in (record.heartbeat_at, record.timings.started_at) if t is not None]
            held.seen_at = since_stamp(max(signs)) if signs else 0.0
        backend = self.backends[route.backend]
        reservation = None if adopting else await backend.reserve()
        if not adopting:
            observe_launch(ticket, msg)
        self.held[ticket.key, ticket.attempt] = held
        held.task = asyncio.create_task(self._supervise(held, backend, reservation, adopting))
        return True

    async def _drop(self, decision: Decision, msg: Msg) -> None:
        """Nothing to run for this claim: drop its entry, free the slot."""
        entry = decision.entry
        if entry is not None and not await self.scheduler.release(entry, decision.revision):
            await self.scheduler.queue.reload(entry.key)  # the bucket leader's, not a lagging view
            if self.scheduler.queue.revision(entry.key) is None:  # dropped by another: a cancel before the run
                log.info("queue entry %s was dropped before this ticket dropped it", entry.key)
            else:
                log.warning("queue entry %s moved on from revision %d before it was dropped", entry.key,
                            decision.revision, extra={"job_id": entry.job_id})  # fmt: skip
        await msg.ack()

    def holding(self) -> list[str]:
        """The queue entry keys of the attempts this replica holds."""
        return [entry_key(t.kind, t.tenant, t.job_id, t.attempt) for t in (h.ticket for h in self.held.values())]

    async def refresh(self) -> None:
        """Tell JetStream every held ticket is still being worked on (call every ack_wait/3), and read
        the held records again after a reconnect (:meth:`HeldRecords.refresh`)."""
        for held in list(self.held.values()):
            with contextlib.suppress(Exception):
                await held.msg.in_progress()
        await self.records.refresh()

    async def stop(self) -> None:
        """Stop supervising (tickets stay un-acked, so another replica adopts the attempts)."""
        await cancel_and_wait([h.task for h in self.held.values() if h.task is not None])

    # -- one attempt ------------------------------------------------------------------------
    async def _supervise(self, held: Held, backend: Backend, reservation: Any, adopting: bool) -> None:
        ticket = held.ticket
        attributes = {"job.id": ticket.job_id, "job.kind": ticket.kind, "job.attempt": ticket.attempt}
        try:
            with tracing.span(f"attempt {ticket.kind}", attributes={**attributes, "adopted": adopting}):
                if adopting:
                    await self.runner.watch(held, backend)
                else:
                    await self.runner.run_stages(held, backend, reservation)
            ran_s = time.monotonic() - held.began
            observe_attempt(ticket.kind, held.outcome, ran_s)
            self.scheduler.finished(held.claim.entry, ran_s, held.outcome == "succeeded")
            if held.outcome == "retrying" and held.record.session is not None:
                await self._keep_slot_for_resume(held)
            await self._drop(held.claim, held.msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            log_failure(log, exc, "attempt supervision failed", extra={"job_id": held.ticket.job_id})
            with contextlib.suppress(Exception):
                await held.msg.nak(delay=1.0)
        finally:
            self.held.pop((held.ticket.key, held.ticket.attempt), None)
            if held.follower is not None:
                await self.records.stop(held.follower)

    async def _keep_slot_for_resume(self, held: Held) -> None:
        """A live session's next attempt (its resume) gets the slot its lost one held: the slot is given up
        once that attempt is queued and due (its backoff waited out), so the decision that fills it sees
        the resume, which is older than every session queued behind it. Given up at once, the slot went
        to one of them, and the resume waited until that session was stopped."""
        ticket = held.ticket
        resume = entry_key(ticket.kind, ticket.tenant, ticket.job_id, ticket.attempt + 1)
        if not await self.scheduler.queue.until_due(resume, held.route.retries.backoff_max_s + RESUME_QUEUED_S):
            log.warning("session %s: its resume was not queued in time; its slot is given up", ticket.job_id)


def _discard(task: asyncio.Future[Any]) -> None:
    """Cancel ``task``, whose result is not wanted (an error it already had is not reported)."""
    task.cancel()
    task.add_done_callback(lambda done: done.cancelled() or done.exception())


async def _held_again(held: Held, msg: Msg) -> None:
    """A ticket whose attempt this replica holds: a spare one is acked. The held ticket itself, delivered
    again (its ack wait ran out while this replica could not say it still works on it), is kept: the new
    delivery is the one acked when the attempt ends. Acked now, it would free the slot while the attempt
    runs, and leave its queue entry claimed by a ticket gone from DISPATCH."""
    if held.msg.metadata.sequence.stream == msg.metadata.sequence.stream:
        held.msg = msg
    else:
        await msg.ack()
