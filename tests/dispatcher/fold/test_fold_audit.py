"""The fold's audit: a record left behind by an event the fold never saw is rewritten as fold(stream)
and its reactions run; a record that agrees is never written; one written lately is not looked at."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.envelope import utc_now
from contracts.events.registry import EventType
from contracts.ids import tenant_key
from contracts.job_record import JobStatus
from contracts.subjects import Namespace, Subjects
from services.dispatcher.fold.audit import FoldAudit
from services.dispatcher.fold.partitions import FOLD_STREAM, declare_fold_stream
from services.dispatcher.fold.reactions import Reactions
from services.dispatcher.store import JobEvents, JobStore
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import EventLog, local_route, request_cancel, submit, wait_record

PARTITIONS = 2
WAITS_ON_AN_UPLOAD = {"kind": "pose", "inputs": {"video": {"upload_id": "upl_never"}}}
"""A job that stays ``created`` (its upload never completes), so nothing but its own events moves it."""


async def _drop_from_fold(js: JetStreamContext, ns: Namespace, job_id: str, event: str, stored: int) -> None:
    """Delete ``job_id``'s ``event`` from ``JOBS_FOLD`` once ``stored`` events were sourced into it: the fold
    never sees it, as when sourcing skips it."""
    stream = ns.stream(FOLD_STREAM)

    async def sourced() -> bool:
        return (await js.stream_info(stream)).state.messages >= stored

    await wait_for(sourced, timeout_s=10, what="the events sourced into JOBS_FOLD")
    for partition in range(PARTITIONS):  # the server picked the partition: look in each
        with contextlib.suppress(NotFoundError):
            msg = await js.get_last_msg(stream, ns.subject(f"fold.{partition}.acme.{job_id}.{event}"))
            break
    else:
        raise AssertionError(f"{event} of {job_id} is in no partition")
    await js.delete_msg(stream, msg.seq)


async def test_a_missed_cancel_request_is_repaired_and_acted_on(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
) -> None:
    await declare_fold_stream(js, namespace, PARTITIONS)  # the events wait there: no dispatcher folds yet
    job_id = await submit(js, jobs_kv, subjects, WAITS_ON_AN_UPLOAD)
    await request_cancel(js, subjects, job_id)
    await _drop_from_fold(js, namespace, job_id, "cancel_requested", stored=2)
    dispatcher = await start_dispatcher(
        {"pose": local_route("noop")}, fold_partitions=PARTITIONS, fold_audit_after_s=0.5, fold_audit_interval_s=0.2
    )
    record = await wait_record(jobs_kv, job_id, lambda r: r.terminal, within_s=30)
    assert record.status is JobStatus.CANCELED  # the reaction to the missed cancel request ran
    assert record.cancel_requested
    assert event_log.types(job_id).count("job.canceled") == 1
    assert dispatcher.metrics()["fold_repaired"] == 1


def _audit(js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace, per_sweep: int) -> FoldAudit:
    """A bare audit (no dispatcher): its reactions are never reached when no record is rewritten."""
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
