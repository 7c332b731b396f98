"""Reading a fault's outcome back once it healed: waits bounded in time, then an :class:`Observed`.

:func:`recovered` waits until every submission made before the heal is answered and, if acknowledged,
terminal (its time is the fault's time to recover); :func:`observe` waits for the rest, the SSE
readers and the webhooks, then reads the receiver, then JOBS, then waits for the fold to catch up, then reads
KV ``jobs`` (so every webhook read has its event in what JOBS gave; reads start again while NATS is away:
:mod:`bench.harness.fault_reads`). A wait that runs out is not an error here: the checker then says
what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time

from nats.aio.client import Client as NatsClient
from nats.js.errors import KeyNotFoundError, NotFoundError

from bench.harness.fault_reads import Stored, retrying, stored_events, wait_terminal
from bench.harness.receivers import Receiver
from bench.harness.waiting import wait_for
from contracts.ids import tenant_key
from contracts.job_record import JobRecord
from contracts.streams import DISPATCH, KV_DISPATCH_QUEUE, KV_FOLD_REFOLDS, KV_JOBS
from services.common.nats.kv import kv_entries, kv_scan
from services.dispatcher.fold.partitions import fold_pending
from services.dispatcher.fold.records import fold
from services.dispatcher.scheduling.queue_entries import QueueEntry
from services.dispatcher.settings import DispatcherSettings
from tests.support.netns.checker import Observed
from tests.support.netns.history import History
from tests.support.netns.load import SseFollower
from tests.support.netns.services import NsStack

FINAL_READS = 3
"""How often the webhooks and then JOBS are read back at most, while events stored after the last read of
the webhooks are missing from them."""
LATE_WEBHOOK_WAIT_S = 10.0
"""How long such late events' webhooks are waited for before they are read again."""
FOLD_CATCH_UP_S = 30.0
"""How long KV's read waits for the fold to fold every event stored and every job marked to be folded again
(a record terminal in KV may still miss an earlier event redelivered after the heal)."""
FOLD_LOOK_EVERY_S = 0.2
"""How often the fold is looked at while KV's read waits for it."""


async def recovered(nc: NatsClient, stack: NsStack, history: History, phase: str, timeout_s: float) -> float:
    """Seconds from the heal of ``phase`` until every submission invoked before it has its answer and every
    one acknowledged is terminal (when the wait runs out: the time it took)."""
    healed = history.marks[f"{phase}:heal"]
    before = [op for op in history.of("submit", phase) if op.invoked <= healed]
    with contextlib.suppress(AssertionError):
        await wait_for(lambda: all(op.completed is not None for op in before), timeout_s, "answers", every_s=0.05)
    await wait_terminal(nc, stack.settings, [str(op.value) for op in before if op.outcome == "ok"], timeout_s)
    return history.now() - healed


def _delivered(stored: dict[str, list[Stored]], got: dict[str, list[tuple[str, bytes]]]) -> bool:
    """Whether every stored event of each job came to the webhook receiver."""
    return all({s.event.id for s in events} <= {w for w, _ in got.get(job_id, [])} for job_id, events in stored.items())


def _all_came(receiver: Receiver, path: str, stored: dict[str, list[Stored]]) -> bool:
    return _delivered(stored, deliveries(receiver, path))


def deliveries(receiver: Receiver, path: str) -> dict[str, list[tuple[str, bytes]]]:
    """The deliveries ``path`` accepted, per job: (``webhook-id``, body), in arrival order."""
    found: dict[str, list[tuple[str, bytes]]] = {}
    for captured in receiver.accepted_on(path):
        with contextlib.suppress(ValueError, AttributeError):
            found.setdefault(str(json.loads(captured.body).get("job_id")), []).append(
                (captured.webhook_id, captured.body)
            )
    return found


async def observe(nc: NatsClient, stack: NsStack, job_ids: list[str], receiver: Receiver, path: str,
                  followers: dict[str, SseFollower], timeout_s: float) -> Observed:  # fmt: skip
    """Wait (at most ``timeout_s`` in all) for the jobs, their SSE readers and webhooks; read it all back."""
    settings = stack.settings
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await wait_terminal(nc, settings, job_ids, timeout_s)
            readers = [followers[j].task for j in job_ids if j in followers]
            await asyncio.gather(*readers, return_exceptions=True)
            stored = await stored_events(nc, settings, job_ids)
            await wait_for(functools.partial(_all_came, receiver, path, stored), timeout_s, "every webhook",
                           every_s=0.1)  # fmt: skip
    for read in range(1, FINAL_READS + 1):  # the webhooks first: each one's event was stored before they were read
        got = deliveries(receiver, path)
        stored = await stored_events(nc, settings, job_ids)
        if _delivered(stored, got) or read == FINAL_READS:
            break
        with contextlib.suppress(AssertionError):  # stored since (a superseded attempt's late writes): on their way
            late = functools.partial(_all_came, receiver, path, stored)
            await wait_for(late, LATE_WEBHOOK_WAIT_S, "the late events' webhooks", every_s=0.1)
    left = await _fold_caught_up(nc, stack, FOLD_CATCH_UP_S)
    kv, folded = await _records(nc, stack, stored)
    sse = {j: (f.seqs, f.done) for j, f in followers.items() if j in stored}
    observed = Observed(stored, kv, folded, {j: got.get(j, []) for j in job_ids}, sse, fold_left=left)
    for job_id in [j for j in stored if kv[j] is not None and kv[j] != folded[j]]:
        observed.kv_history[job_id] = await _revisions(nc, stack, stored[job_id][0].event.tenant, job_id)
    for job_id in [j for j, record in kv.items() if stored[j] and not (record and record.terminal)]:
        with contextlib.suppress(Exception):  # a report's detail: a read that fails leaves it out
            observed.queue_entries[job_id] = await _queue_entries(nc, stack, stored[job_id][0].event.tenant, job_id)
    return observed


async def _fold_caught_up(nc: NatsClient, stack: NsStack, timeout_s: float) -> str:
    """Wait (at most ``timeout_s``) until every fold partition consumer has delivered and seen acknowledged
    every event of JOBS and no job is marked to be folded again (KV ``fold_refolds``, scanned as the
    refolds scan it); what was left then ("": nothing). KV == fold(stream) holds once the fold has caught
    up, not before: a redelivery after the heal, or its refold, may land after the job's terminal event
    was folded. A read that fails (NATS away) is tried again at the next look."""
    js = nc.jetstream(timeout=10.0)
    ns, partitions = stack.settings.ns, DispatcherSettings.model_fields["fold_partitions"].default
    deadline, marks = time.monotonic() + timeout_s, None
    while True:
        try:
            marks = marks or await js.key_value(ns.bucket(KV_FOLD_REFOLDS))
            marked = [item.key for item in await kv_scan(marks, ">")]
            pending = await fold_pending(js, ns, partitions)
            if pending == 0 and not marked:
                return ""
            left = f"{pending} events, {len(marked)} jobs to fold again {marked[:5]}"
        except Exception as exc:  # noqa: BLE001 - looked at again until the wait runs out, then reported
            left = f"not read ({exc!r})"
        if time.monotonic() >= deadline:
            return left
        await asyncio.sleep(FOLD_LOOK_EVERY_S)


async def _queue_entries(nc: NatsClient, stack: NsStack, tenant: str, job_id: str) -> str:
    """A job's KV ``dispatch_queue`` entries in brief (key, revision, claiming ticket and whether DISPATCH
    still holds it), for the report of a job that did not end."""
    js = nc.jetstream(timeout=10.0)
    bucket = await retrying(lambda: js.key_value(stack.settings.ns.bucket(KV_DISPATCH_QUEUE)))
    brief = []
    for item in await retrying(functools.partial(kv_entries, bucket, f"*.{tenant}.{job_id}.*")):
        entry = QueueEntry.model_validate_json(item.value or b"{}")
        held = ""
        if entry.claimed_by is not None:
            try:
                await js.get_msg(stack.settings.ns.stream(DISPATCH), entry.claimed_by)
                held = " (in DISPATCH)"
            except NotFoundError:
                held = " (gone from DISPATCH)"
        brief.append(f"{item.key} r{item.revision} claimed_by={entry.claimed_by}{held}")
    return "[queue entries " + (", ".join(brief) or "none") + "]"


async def _revisions(nc: NatsClient, stack: NsStack, tenant: str, job_id: str) -> str:
    """Every revision of a job's KV record in brief (revision, status, attempt, updated_at), for a report."""
    bucket = await retrying(lambda: nc.jetstream(timeout=10.0).key_value(stack.settings.ns.bucket(KV_JOBS)))
    entries = await retrying(functools.partial(bucket.history, tenant_key(tenant, job_id)))
    brief = []
    for entry in entries:
        if not entry.value:
            brief.append(f"r{entry.revision}:{entry.operation}")
            continue
        record = JobRecord.model_validate_json(entry.value)
        brief.append(f"r{entry.revision}:{record.status}/a{record.attempt}@{record.updated_at:%H:%M:%S.%f}")
    return "[KV revisions " + ", ".join(brief) + "]"


async def _records(nc: NatsClient, stack: NsStack, stored: dict[str, list[Stored]]
                   ) -> tuple[dict[str, JobRecord | None], dict[str, JobRecord | None]]:  # fmt: skip
    """Each job's KV record (``None``: none) and the fold of its stored events."""
    bucket = await retrying(lambda: nc.jetstream(timeout=10.0).key_value(stack.settings.ns.bucket(KV_JOBS)))
    kv: dict[str, JobRecord | None] = {}
    folded: dict[str, JobRecord | None] = {}
    for job_id, events in stored.items():
        folded[job_id] = fold((s.event for s in events), stack.pricing)
        kv[job_id] = None
        if events:
            with contextlib.suppress(KeyNotFoundError):
                entry = await retrying(functools.partial(bucket.get, tenant_key(events[0].event.tenant, job_id)))
                kv[job_id] = JobRecord.model_validate_json(entry.value or b"{}")
    return kv, folded
