"""The fold's audit: a record left behind by an event the fold never saw is rewritten as fold(stream)
and its reactions run; a record that agrees but waits on a reaction the fold missed gets it (a
netfaults run, the JOBS leader killed, left a job ``created`` for good: ``job.created`` stored, the
record equal to its fold, no release); a record that agrees is never written; one written lately is
not looked at."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts import streams
from contracts.envelope import utc_now
from contracts.events.registry import EventType
from contracts.ids import tenant_key
from contracts.job_parts import JobStatus
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.dispatcher.fold.audit import FoldAudit
from services.dispatcher.fold.partition_pulls import PIN_MARGIN_S
from services.dispatcher.fold.partitions import fold_durable, fold_settled, partition_filters
from services.dispatcher.fold.pinned.consumer import PinnedConsumer
from services.dispatcher.fold.reactions import Reactions
from services.dispatcher.job_events import JobEvents
from services.dispatcher.scheduling.queue_entries import QueueEntry, entry_key
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.store import JobStore
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, read_record, request_cancel, submit, wait_record

PARTITIONS = 2
WAITS_ON_AN_UPLOAD = {"kind": "pose", "inputs": {"video": {"upload_id": "upl_never"}}}
"""A job that stays ``created`` (its upload never completes), so nothing but its own events moves it."""
FAST_AUDIT = {"fold_partitions": PARTITIONS, "fold_audit_after_s": 0.5, "fold_audit_interval_s": 0.2}


async def _fold_after(js: JetStreamContext, settings: DispatcherSettings, seq: int) -> None:
    """Make every fold partition's consumer (as the dispatcher makes it) start after JOBS' ``seq``: the
    fold never sees the events up to it, as when a batch was acked without its write."""
    s = settings
    for partition in range(PARTITIONS):
        consumer = PinnedConsumer(
            s.ns.stream(JOBS), fold_durable(partition), tuple(partition_filters(s.ns, partition, PARTITIONS)),
            ack_wait_s=s.event_ack_wait_s, max_deliver=s.fold_max_deliver, max_ack_pending=s.fold_batch,
            pin_timeout_s=s.event_ack_wait_s + PIN_MARGIN_S,
        )  # fmt: skip
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(s.ns.stream(JOBS), fold_durable(partition))
        await consumer.ensure(js._nc, seq + 1)


@pytest.mark.parametrize(
    ("spec", "missed", "cancel", "ends"),
    [
        (WAITS_ON_AN_UPLOAD, "cancel_requested", True, JobStatus.CANCELED),  # the record differs: rewritten
        (POSE, "created", False, JobStatus.SUCCEEDED),  # the record agrees, but its release never came
    ],
)
async def test_a_missed_event_is_repaired_and_acted_on(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    settings: DispatcherSettings,
    event_log: EventLog,
    spec: dict[str, Any],
    missed: str,
    cancel: bool,
    ends: JobStatus,
) -> None:
    job_id = await submit(js, jobs_kv, subjects, spec)
    if cancel:  # job.created folded, then job.cancel_requested missed
        first = await start_dispatcher({"pose": local_route("noop")}, **FAST_AUDIT)
        await wait_for(lambda: fold_settled(js, namespace, PARTITIONS), timeout_s=20, what="job.created folded")
        await first.stop()
        await request_cancel(js, subjects, job_id)
    await _fold_after(
        js, settings.model_copy(update=FAST_AUDIT), (await js.stream_info(namespace.stream(JOBS))).state.last_seq
    )
    dispatcher = await start_dispatcher({"pose": local_route("noop")}, **FAST_AUDIT)
    record = await wait_record(jobs_kv, job_id, lambda r: r.terminal, within_s=30)
    assert record.status is ends  # the reaction to the missed event ran
    assert record.cancel_requested is cancel
    types = event_log.types(job_id)
    assert (types.count("job.canceled"), types.count("job.queued")) == ((1, 0) if cancel else (0, 1))
    assert dispatcher.metrics()["fold_repaired"] == 1


async def test_a_queued_job_without_its_queue_entry_is_queued_again_when_it_was_due(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, namespace: Namespace
) -> None:
    """Its ``job.queued`` folded, its queue entry lost (the reaction that made it never finished)."""
    queue = await js.key_value(namespace.bucket(streams.KV_DISPATCH_QUEUE))
    dispatcher = await start_dispatcher({"pose": local_route("noop")}, **FAST_AUDIT)
    job_id = await submit(js, jobs_kv, subjects, {**POSE, "delay_s": 3600})  # queued, due in an hour
    await wait_record(jobs_kv, job_id, lambda r: r.status is JobStatus.QUEUED, within_s=10)
    key = entry_key("pose", "acme", job_id, 1)
    queued = QueueEntry.model_validate_json((await queue.get(key)).value or b"")
    repaired = dispatcher.metrics()["fold_repaired"]
    await queue.delete(key)

    async def queued_again() -> bool:
        with contextlib.suppress(KeyNotFoundError):
            return bool((await queue.get(key)).value)
        return False

    await wait_for(queued_again, timeout_s=15, what="the queue entry made again")
    again = QueueEntry.model_validate_json((await queue.get(key)).value or b"")
    assert (again.not_before, again.enqueued_at) == (queued.not_before, queued.enqueued_at)  # due and placed as before
    assert dispatcher.metrics()["fold_repaired"] == repaired + 1
    assert (await read_record(jobs_kv, job_id)).status is JobStatus.QUEUED


def _audit(js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, per_sweep: int) -> FoldAudit:
    """A bare audit (no dispatcher, no routes, no queue): enough for records that agree and wait on an
    upload (the resume reads the upload, finds it pending and does nothing)."""
    store = JobStore(jobs_kv)
    reactions = Reactions(store, JobEvents(js, namespace), jobs_kv, jobs_kv, {}, None, None)  # type: ignore[arg-type]
    return FoldAudit(store, reactions, 30.0, per_sweep, max_candidates=100, max_events=100)


async def _revisions(jobs_kv: KeyValue, job_id: str) -> int:
    return len(await jobs_kv.history(tenant_key("acme", job_id)))


async def test_records_are_audited_once_unmoving_agreeing_ones_never_written_and_a_sweep_is_bounded(
    js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, namespace: Namespace, event_log: EventLog
) -> None:
    jobs = [await submit(js, jobs_kv, subjects, WAITS_ON_AN_UPLOAD) for _ in range(3)]
    await event_log.wait(lambda: all(event_log.types(j) == [EventType.JOB_CREATED] for j in jobs))
    audit = _audit(js, jobs_kv, namespace, per_sweep=2)
    audit.clock = lambda: utc_now() + timedelta(seconds=20)  # written less than fold_audit_after_s ago
    assert await audit.sweep() == []
    assert audit.audited == 0
    assert set(audit.candidates) == {tenant_key("acme", j) for j in jobs}
    audit.clock = lambda: utc_now() + timedelta(seconds=40)
    assert await audit.sweep() == []
    assert audit.audited == 2  # at most per_sweep
    assert await audit.sweep() == []
    assert audit.audited == 3  # the one left; the two audited are due again only after another 30 s
    assert [await _revisions(jobs_kv, j) for j in jobs] == [1, 1, 1]  # agreeing records: never written
    assert audit.repaired == 0
