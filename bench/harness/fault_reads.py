"""Reading what the fault suite checks, while NATS may still be away (a cluster electing a leader).

:func:`stored_events` reads a set of jobs' events from JOBS, :func:`wait_terminal` watches KV ``jobs``
until they end; both start again from scratch while :func:`~services.common.nats.connection.is_unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from nats.aio.client import Client as NatsClient

from contracts.envelope import EventEnvelope
from contracts.job_record import JobRecord
from contracts.streams import JOBS, KV_JOBS
from services.cli.replay.reader import consumer_config, read_range
from services.common.config import BaseServiceSettings
from services.common.nats.connection import is_unavailable

T = TypeVar("T")
READ_RETRY_S = 30.0


@dataclass(frozen=True)
class Stored:
    """One event as JOBS holds it: its stream sequence and envelope."""

    seq: int
    event: EventEnvelope


BRIEF_EVENTS = 80
"""The most events of a job :func:`events_brief` names (the rest are counted)."""


def events_brief(events: list[Stored]) -> str:
    """A job's events in brief, in stream order (sequence, type, attempt; a queue place's position), for a
    report: with the KV revisions, they show which event the record missed or took out of order."""
    brief = []
    for stored in events[:BRIEF_EVENTS]:
        place = stored.event.data.get("position") if stored.event.type in ("job.queued", "job.position") else None
        at = f" p{place}" if place is not None else ""
        brief.append(f"#{stored.seq}:{stored.event.type.removeprefix('job.')}/a{stored.event.attempt}{at}")
    more = f", {len(events) - BRIEF_EVENTS} more" if len(events) > BRIEF_EVENTS else ""
    return "[JOBS " + ", ".join(brief) + more + "]"


async def retrying(read: Callable[[], Awaitable[T]], timeout_s: float = READ_RETRY_S) -> T:
    """``read()``, again while NATS is away (a cluster electing a leader), for at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await read()
        except Exception as exc:
            if not is_unavailable(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def stored_events(nc: NatsClient, settings: BaseServiceSettings, job_ids: list[str]) -> dict[str, list[Stored]]:
    """The events of ``job_ids`` in JOBS, per job, in stream order (read again while NATS is away)."""
    return await retrying(lambda: _stored_events(nc, settings, job_ids))


async def _stored_events(nc: NatsClient, settings: BaseServiceSettings, job_ids: list[str]) -> dict[str, list[Stored]]:
    wanted = set(job_ids)
    found: dict[str, list[Stored]] = {job_id: [] for job_id in job_ids}
    async for msg in read_range(nc, settings, JOBS, "jobs.>", consumer_config(None, None)):
        event = EventEnvelope.from_json_bytes(msg.data)
        if event.job_id in wanted:
            found[event.job_id].append(Stored(msg.metadata.sequence.stream, event))
    return found


async def wait_terminal(
    nc: NatsClient, settings: BaseServiceSettings, job_ids: list[str], timeout_s: float
) -> set[str]:
    """Wait (at most ``timeout_s``) until every job's KV record is terminal (a watch of KV ``jobs``, no
    polling; watched anew while NATS is away); the jobs still not terminal."""
    left = set(job_ids)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await retrying(lambda: _watch_terminal(nc, settings, left), timeout_s)
    return left


async def _watch_terminal(nc: NatsClient, settings: BaseServiceSettings, left: set[str]) -> None:
    kv = await nc.jetstream().key_value(settings.ns.bucket(KV_JOBS))
    watcher = await kv.watchall()
    try:
        async for entry in watcher:
            if entry is not None and entry.value:
                record = JobRecord.model_validate_json(entry.value)
                if record.terminal:
                    left.discard(record.id)
            if not left:
                return
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
