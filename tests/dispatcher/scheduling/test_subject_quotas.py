"""Per-subject quotas in the scheduler: each end user of a tenant runs at most subject_max_running_per_kind
attempts of a kind at once (others of the tenant are not held back), and their GPU-seconds are counted to
the subject's day as well as the tenant's."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.envelope import utc_now
from contracts.events.registry import job_created_event
from contracts.ids import new_id, tenant_key
from contracts.job_record import JobRecord
from contracts.quotas import TenantQuota
from contracts.specs.jobs import parse_job_spec
from contracts.subjects import Namespace, Subjects
from services.common.nats.publish import publish_event
from services.common.quotas import QuotaBook
from tests.dispatcher.conftest import StartDispatcher
from tests.dispatcher.scheduling.test_quotas import most_at_once
from tests.support.dispatcher import POSE, EventLog, local_route
from tests.support.scheduling import InstantBackend, quota_book


async def submit_as(js: JetStreamContext, kv: KeyValue, subjects: Subjects, subject: str | None) -> str:
    """A pose job of tenant acme created by end user ``subject``, as the gateway creates it."""
    job_id = new_id("job")
    record = JobRecord.new(job_id, "acme", parse_job_spec(POSE), utc_now(), subject=subject)
    await kv.create(tenant_key("acme", job_id), record.model_dump_json().encode())
    await publish_event(js, subjects.job_event("acme", job_id, "created"), job_created_event(record))
    return job_id


async def test_each_subject_runs_at_most_its_limit_and_its_seconds_are_counted(
    start_dispatcher: StartDispatcher,
    instant: InstantBackend,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
) -> None:
    instant.run_s = 0.2
    instant.gate.set()
    await start_dispatcher({"pose": local_route("noop", concurrency=6)}, backends={"local": instant})
    book = await quota_book(js, namespace)
    await book.set("acme", TenantQuota(subject_max_running_per_kind=1))
    alice = [await submit_as(js, jobs_kv, subjects, "alice") for _ in range(4)]
    bob = [await submit_as(js, jobs_kv, subjects, "bob") for _ in range(4)]
    anyone = [await submit_as(js, jobs_kv, subjects, None) for _ in range(4)]
    await event_log.wait_ended(alice + bob + anyone, 30)
    assert most_at_once(event_log, alice) == 1
    assert most_at_once(event_log, bob) == 1
    assert most_at_once(event_log, alice + bob) <= 2
    assert most_at_once(event_log, anyone) > 1
    await wait_for(lambda: _at_least(book, "alice", 4 * 0.2), 10, "alice's GPU-seconds written")
    # the tally is flushed each second: the tenant's last runs may land in a later flush than alice's
    await wait_for(lambda: _at_least(book, None, 12 * 0.2), 10, "the tenant's GPU-seconds written")


async def _at_least(book: QuotaBook, subject: str | None, seconds: float) -> bool:
    """Whether ``subject``'s (``None``: the tenant's) GPU-seconds today reach ``seconds``."""
    if subject is None:
        return await book.gpu_seconds_today("acme") >= seconds
    return await book.subject_gpu_seconds_today("acme", subject) >= seconds
