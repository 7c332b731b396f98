"""Supervising one held attempt: the record it watches and the wait for how it ends.

Silence and timeouts are measured on this process's monotonic clock, from when this supervisor *saw*
each sign of life (a record revision with a new heartbeat, a heartbeat heard passing, a new one in the
log), never by comparing wall-clock stamps: a step of this host's wall clock (an NTP correction, a VM
resumed) made every sign look 90 s old and failed a healthy session (docs/operations.md, the clock
step). A wall-clock stamp is turned into an age only where nothing else tells how old a sign is
(:func:`~services.dispatcher.running.hearing.since_stamp`: an attempt adopted from another replica,
the first heartbeat found in the log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg

from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from contracts.route_table import Route
from contracts.runs import Outcome
from services.dispatcher.running.backends import Launch
from services.dispatcher.running.hearing import Hearing
from services.dispatcher.running.held_records import Follower
from services.dispatcher.running.pool_process import WorkerLostError
from services.dispatcher.running.tickets import Ticket

log = logging.getLogger(__name__)


def _life_signs(record: JobRecord) -> tuple[datetime | None, datetime | None]:
    """What in a record shows its worker alive: its heartbeat and start stamps."""
    return record.heartbeat_at, record.timings.started_at


@dataclass
class Held:
    """One attempt this replica holds the ticket of."""

    ticket: Ticket
    msg: Msg
    record: JobRecord
    route: Route
    revision: int = 0
    """The KV revision of ``record`` (a newer one replaces it: :meth:`offer`)."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    began: float = field(default_factory=time.monotonic)
    """When the attempt began (monotonic): its timeout and its first silence count from here."""
    seen_at: float = 0.0
    """When this supervisor last saw a sign of life (monotonic): a record revision with a new heartbeat
    or start (:meth:`offer`), or one found outside the record
    (:meth:`~services.dispatcher.running.hearing.Hearing.last_sign`)."""
    task: asyncio.Task[None] | None = None
    claim: Any = None
    """The scheduler's :class:`~services.dispatcher.scheduling.scheduler.Decision` (its queue entry,
    dropped at the end)."""
    outcome: str = "ended"
    """How the attempt ended (``gpurelay_job_run_seconds``): succeeded, failed, retrying, canceled, or
    ended (elsewhere: nothing of ours published)."""
    follower: Follower | None = None
    """What follows the job's record in KV for this attempt (:mod:`services.dispatcher.running.held_records`)."""

    def offer(self, record: JobRecord, revision: int) -> None:
        """A revision of the job's record: kept, and the attempt woken, when newer than the one held."""
        if revision > self.revision:
            if _life_signs(record) != _life_signs(self.record):
                self.seen_at = time.monotonic()
            self.record, self.revision = record, revision
            self.changed.set()


@dataclass(frozen=True)
class Verdict:
    """Why a wait ended: ``outcome``, ``lost``, ``timeout``, ``silent``, ``cancel`` or ``ended``."""

    reason: str
    outcome: Outcome | None = None
    message: str = ""


async def wait_for_verdict(
    held: Held, launch: Launch | None, timeout_at: float, silence: float, hearing: Hearing | None = None
) -> Verdict:
    """Until the first of: an outcome, a lost worker, the timeout (``timeout_at``, monotonic),
    ``silence`` s without a sign of life, a cancel request, or the job ending (or moving to a later
    attempt) elsewhere. With ``hearing``, the attempt's heartbeats are heard as they pass, and a
    silence is confirmed against the link and the log before it is called
    (:mod:`~services.dispatcher.running.hearing`)."""
    if hearing is None:
        return await _wait(held, launch, timeout_at, silence, None)
    ticket = held.ticket
    async with hearing.listening(ticket.tenant, ticket.job_id, ticket.attempt):
        return await _wait(held, launch, timeout_at, silence, hearing)


async def _wait(
    held: Held, launch: Launch | None, timeout_at: float, silence: float, hearing: Hearing | None
) -> Verdict:
    confirmed = False
    while True:
        record = held.record
        if record.terminal or record.attempt > held.ticket.attempt:
            own_end = record.attempt == held.ticket.attempt and record.status is not JobStatus.CANCELED
            if launch is not None and own_end:  # the worker ended it: let it hand back its outcome
                await asyncio.wait({launch.outcome}, timeout=silence)
            return Verdict("ended")
        if record.cancel_requested:
            return Verdict("cancel")
        heard = hearing.heard(held.ticket.tenant, held.ticket.job_id, held.ticket.attempt) if hearing else 0.0
        signs = [held.began, held.seen_at, heard]
        silent_at, now = max(signs) + silence, time.monotonic()
        if now >= timeout_at:
            return Verdict("timeout", message=f"the attempt ran past its {held.route.timeout_s:g} s timeout")
        if now >= silent_at:
            if hearing is None or confirmed:
                log.warning("job %s attempt %d: no sign of life for %.1f s (the link's view unbroken for %.1f s)",
                            held.ticket.job_id, held.ticket.attempt, now - max(signs),
                            now - hearing.link.regained_at if hearing else -1.0)  # fmt: skip
                return Verdict("silent", message=f"no heartbeat for {silence:g} s")
            ticket = held.ticket
            held.seen_at = max(held.seen_at, await hearing.last_sign(ticket.tenant, ticket.job_id, ticket.attempt))
            confirmed = True
            continue
        confirmed = False
        held.changed.clear()
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(held.changed.wait())}
        if launch is not None:
            waiters.add(launch.outcome)
        done, _ = await asyncio.wait(waiters, timeout=min(timeout_at, silent_at) - now, return_when="FIRST_COMPLETED")
        for waiter in waiters - {launch.outcome if launch else None}:
            waiter.cancel()
        if launch is not None and launch.outcome in done:
            try:
                return Verdict("outcome", outcome=launch.outcome.result())
            except WorkerLostError as exc:
                return Verdict("lost", message=str(exc))
            except Exception as exc:  # noqa: BLE001 - a backend failure is a lost worker
                return Verdict("lost", message=f"{type(exc).__name__}: {exc}")


def ended_as(held: Held) -> str:
    """How an attempt whose record ended before its outcome came back is counted: ``succeeded`` or
    ``failed`` when the record ended in this attempt (its worker said so), else ``ended``."""
    record = held.record
    if record.attempt != held.ticket.attempt:
        return "ended"
    return {JobStatus.SUCCEEDED: "succeeded", JobStatus.FAILED: "failed"}.get(record.status, "ended")
