"""What the fault suite checks once the faults are over: nothing lost, nothing out of place.

* every job is terminal (succeeded), its events in JOBS form its whole lifecycle (created, queued,
  dispatched, started, every step its workload logged, succeeded), and its KV record equals the
  dispatcher's fold of those events;
* every webhook arrived (each event's ``webhook-id`` at the receiver, signatures valid), duplicates
  counted by id, and a duplicate carries the same body (a receiver may dedupe by ``webhook-id``);
* every SSE reader got the job's events in stream order, with no gap, resuming with Last-Event-ID
  across whatever broke (:class:`SseReader`).

:class:`Audit` holds the figures; :meth:`Audit.problems` lists every violation (empty: all held).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from nats.js.errors import KeyNotFoundError

from bench.harness.fault_clients import SseReader
from bench.harness.fault_reads import Stored, retrying, stored_events, wait_terminal
from bench.harness.receivers import Receiver
from bench.harness.waiting import wait_for
from contracts.events.registry import TERMINAL_JOB_EVENTS
from contracts.ids import tenant_key
from contracts.job_record import JobRecord
from contracts.streams import KV_JOBS
from services.common.config import BaseServiceSettings
from services.dispatcher.fold.records import Pricing, fold

LIFECYCLE = ("job.created", "job.queued", "job.dispatched", "job.started", "job.succeeded")
STEP = re.compile(r"step (\d+)")


def lifecycle_problems(job_id: str, events: list[Stored]) -> list[str]:
    """What is missing or out of order in one job's events (empty: its whole lifecycle is there)."""
    types = [s.event.type for s in events]
    at = [types.index(t) if t in types else -1 for t in LIFECYCLE]
    if -1 in at:
        return [f"{job_id}: no {LIFECYCLE[at.index(-1)]} in {types}"]
    if at != sorted(at) or at[0] != 0:
        return [f"{job_id}: lifecycle out of order: {types}"]
    succeeded = events[at[-1]].event
    if [t for t in types if t in TERMINAL_JOB_EVENTS] != ["job.succeeded"]:
        return [f"{job_id}: more than one terminal event: {types}"]
    steps = [
        int(m.group(1))
        for s in events
        if s.event.type == "job.log" and s.event.attempt == succeeded.attempt
        and (m := STEP.fullmatch(str(s.event.data.get("message", ""))))
    ]  # fmt: skip
    logged = int((succeeded.data.get("result") or {}).get("steps", -1))
    if steps != list(range(1, logged + 1)):
        return [f"{job_id}: attempt {succeeded.attempt} logged steps 1..{logged}, JOBS holds {steps}"]
    return []


async def kv_records(nc: NatsClient, settings: BaseServiceSettings, events: dict[str, list[Stored]],
                     pricing: Pricing) -> tuple[list[str], int]:  # fmt: skip
    """Jobs whose KV record differs from the fold of their events (or is missing), and how many records
    are terminal."""
    kv = await nc.jetstream().key_value(settings.ns.bucket(KV_JOBS))
    problems, terminal = [], 0
    for job_id, stored in events.items():
        folded = fold((s.event for s in stored), pricing)
        try:
            key = tenant_key(stored[0].event.tenant if stored else "acme", job_id)
            entry = await retrying(functools.partial(kv.get, key))
        except KeyNotFoundError:
            problems.append(f"{job_id}: no KV record")
            continue
        live = JobRecord.model_validate_json(entry.value or b"{}")
        terminal += live.terminal
        if folded is None or live != folded:
            problems.append(f"{job_id}: KV record != fold(stream): {live.status} vs {folded and folded.status}")
    return problems, terminal


def _job_of(body: bytes) -> str | None:
    try:
        job_id = json.loads(body).get("job_id")
    except (ValueError, AttributeError):
        return None
    return job_id if isinstance(job_id, str) else None


def sse_problems(reader: SseReader, stored: list[Stored]) -> list[str]:
    """How what ``reader`` read differs from its job's events up to the terminal one (empty: gap-free)."""
    if not reader.task.done():
        return [f"{reader.job_id}: the SSE reader has not reached a terminal event ({reader.where()})"]
    if reader.task.cancelled():
        return [f"{reader.job_id}: the SSE reader was cancelled before a terminal event"]
    if reader.task.exception() is not None:
        return [f"{reader.job_id}: the SSE reader failed: {reader.task.exception()!r}"]
    expected: list[int] = []
    for s in stored:
        expected.append(s.seq)
        if s.event.type in TERMINAL_JOB_EVENTS:
            break
    if reader.seqs != expected:
        missing = sorted(set(expected) - set(reader.seqs))
        return [f"{reader.job_id}: SSE read {len(reader.seqs)} events of {len(expected)}; missing {missing[:5]}"]
    return []


@dataclass
class Audit:
    """The figures of one fault run, and every violation found."""

    jobs: int = 0
    terminal: int = 0
    """Jobs whose KV record is terminal."""
    events: int = 0
    retried: int = 0
    """Attempts that ended in ``job.retrying`` (a crash took the run with it) and were tried again."""
    webhooks_expected: int = 0
    webhooks_received: int = 0
    webhook_duplicates: int = 0
    webhooks_missing: int = 0
    invalid_signatures: int = 0
    sse_readers: int = 0
    found: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Every violation (empty: nothing lost, nothing out of place)."""
        return self.found

    @property
    def losses(self) -> int:
        """Events or deliveries lost: missing webhooks plus every other violation."""
        return self.webhooks_missing + len(self.found)


async def audit(
    nc: NatsClient,
    settings: BaseServiceSettings,
    job_ids: list[str],
    pricing: Pricing,
    receivers: dict[str, Receiver],
    readers: list[SseReader],
) -> Audit:
    """Check the jobs, their KV records, the webhooks (``receivers``: the receiver of each endpoint, by its
    URL path; each gets every event of the jobs) and the SSE readers."""
    events = await stored_events(nc, settings, job_ids)
    result = Audit(jobs=len(job_ids), events=sum(len(v) for v in events.values()), sse_readers=len(readers))
    result.retried = sum(s.event.type == "job.retrying" for stored in events.values() for s in stored)
    for job_id, stored in events.items():
        result.found += lifecycle_problems(job_id, stored)
    problems, result.terminal = await kv_records(nc, settings, events, pricing)
    result.found += problems
    expected = {s.event.id for stored in events.values() for s in stored}
    for path, receiver in receivers.items():
        ids = _webhook_ids(receiver, path, events.keys())
        result.webhooks_expected += len(expected)
        result.webhooks_received += len(expected & ids.keys())
        result.webhooks_missing += len(expected - ids.keys())
        result.webhook_duplicates += sum(ids.values()) - len(ids)
        if unexpected := ids.keys() - expected:
            result.found.append(f"{path}: {len(unexpected)} webhooks of the jobs with no stored event")
        result.found += _dedupable(receiver, path, events.keys())
    result.invalid_signatures = sum(len(r.invalid) for r in {id(r): r for r in receivers.values()}.values())
    for reader in readers:
        result.found += sse_problems(reader, events[reader.job_id])
    if result.invalid_signatures:
        result.found.append(f"{result.invalid_signatures} webhook signatures did not verify")
    return result


async def settle(
    nc: NatsClient,
    settings: BaseServiceSettings,
    job_ids: list[str],
    pricing: Pricing,
    receivers: dict[str, Receiver],
    readers: list[SseReader],
    timeout_s: float = 60.0,
) -> Audit:
    """Wait (at most ``timeout_s``) until the jobs are terminal, the readers done and every webhook in,
    then :func:`audit` (which tells what is still missing, if the wait ran out)."""
    try:
        async with asyncio.timeout(timeout_s) as budget:
            await wait_terminal(nc, settings, job_ids, timeout_s)
            if readers:  # not gather: a gather cut by the time-out cancels the readers, and the audit
                await asyncio.wait([reader.task for reader in readers])  # must see where each one stopped
            events = await stored_events(nc, settings, job_ids)
            expected = {s.event.id for stored in events.values() for s in stored}

            def complete() -> bool:
                return all(expected <= _webhook_ids(r, path, events.keys()).keys() for path, r in receivers.items())

            await wait_for(complete, timeout_s, "every webhook", every_s=0.05)
    except TimeoutError:
        if not budget.expired():
            raise
    return await audit(nc, settings, job_ids, pricing, receivers, readers)


def _dedupable(receiver: Receiver, path: str, jobs: Collection[str]) -> list[str]:
    """Webhook ids delivered more than once with different bodies: a receiver deduping by id would lose one."""
    bodies: dict[str, set[bytes]] = {}
    for c in receiver.accepted_on(path):
        if _job_of(c.body) in jobs:
            bodies.setdefault(c.webhook_id, set()).add(c.body)
    return [f"{path}: webhook-id {wid} came with {len(b)} different bodies" for wid, b in bodies.items() if len(b) > 1]


def _webhook_ids(receiver: Receiver, path: str, jobs: Collection[str]) -> Counter[str]:
    """The webhook ids ``path`` accepted (answered 2xx) for events of ``jobs``, with how often each came."""
    return Counter(c.webhook_id for c in receiver.accepted_on(path) if _job_of(c.body) in jobs)
