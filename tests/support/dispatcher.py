"""Dispatcher test helpers (worker tests use them too): settings, routes, jobs as the gateway submits them."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import SecretStr

from bench.harness.secrets import INGEST_SECRET, SIGNING_SECRET
from bench.harness.waiting import wait_for
from contracts import streams
from contracts.envelope import EventEnvelope, utc_now
from contracts.event_ids import cancel_requested_event_id
from contracts.events.jobs import JobCancelRequestedPayload
from contracts.events.registry import CREATED_RECORD_REVISION, EventType, job_created_event, make_event
from contracts.ids import new_id, tenant_key
from contracts.job_record import JobRecord
from contracts.route_table import RetryPolicy, Route, Stage
from contracts.specs.jobs import parse_job_spec
from contracts.subjects import Namespace, Subjects
from services.common.nats.kv_watch import latest_record
from services.common.nats.publish import publish_event
from services.dispatcher.fold.handover import pinned_client
from services.dispatcher.fold.pinned.consumer import jetstream_api
from services.dispatcher.settings import DispatcherSettings

POSE = {"kind": "pose", "inputs": {"video": {"url": "https://example.com/v.mp4"}}}
NERF = {"kind": "nerf", "inputs": {"images": {"url": "https://example.com/i.zip"}}}
W = "tests.dispatcher.workloads"


PATIENT_MISSES = 10
"""``heartbeat_misses`` for tests about something other than a silent worker: 3 s of silence (at the
tests' 0.3 s heartbeats) before an attempt is lost. A loaded CI machine starved a pool process for
1.2 s, and the live attempt it ran was retried while it still ran (a third job over a limit of 2)."""


def dispatcher_settings(nats_url: str, ns: Namespace, data_dir: Path, **overrides: Any) -> DispatcherSettings:
    """Fast settings for tests: short heartbeats and ack waits, local storage under ``data_dir``."""
    values: dict[str, Any] = {
        "profile": "test",
        "nats_url": nats_url,
        "namespace": ns.name,
        "data_dir": data_dir,
        "storage_backend": "local",
        "signing_secret": SecretStr(SIGNING_SECRET),
        "ingest_token_secret": SecretStr(INGEST_SECRET),
        "heartbeat_interval_s": 0.3,
        "heartbeat_misses": 4,
        "event_ack_wait_s": 2.0,
        "ticket_ack_wait_s": 2.0,
        "local_pool_size": 2,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return DispatcherSettings(**values)


def local_route(function: str, **overrides: Any) -> Route:
    """A local route running ``tests.dispatcher.workloads:<function>`` with fast retries."""
    values: dict[str, Any] = {
        "backend": "local",
        "function": function,
        "local": f"{W}:{function}",
        "timeout_s": 30.0,
        "retries": RetryPolicy(max_attempts=3, backoff_initial_s=0.05, backoff_max_s=0.2),
        "concurrency": 8,
        "price_per_gpu_hour": 3.6,
    }
    values.update(overrides)
    return Route(**values)


def pipeline_route() -> Route:
    """nerf = colmap → train → render with weights 0.2, 0.6, 0.2."""
    stages = tuple(
        Stage(name=name, function=f"nerf_{name}", local=f"{W}:{name}", weight=weight)
        for name, weight in (("colmap", 0.2), ("train", 0.6), ("render", 0.2))
    )
    return local_route("colmap", stages=stages, local=None)


async def submit(
    js: JetStreamContext,
    kv: KeyValue,
    subjects: Subjects,
    spec: dict[str, Any],
    tenant: str = "acme",
    job_id: str | None = None,
    revision: bool = True,
) -> str:
    """Create a job (``job_id``, a new one by default) as the gateway does: KV create of the first
    record, then ``job.created`` with the record's revision (without it with ``revision=False``, as the
    sweeper or a retried request publishes it)."""
    job_id = job_id or new_id("job")
    record = JobRecord.new(job_id, tenant, parse_job_spec(spec), utc_now())
    created = await kv.create(tenant_key(tenant, job_id), record.model_dump_json().encode())
    headers = {CREATED_RECORD_REVISION: str(created)} if revision else None
    await publish_event(js, subjects.job_event(tenant, job_id, "created"), job_created_event(record), headers=headers)
    return job_id


async def request_cancel(js: JetStreamContext, subjects: Subjects, job_id: str, tenant: str = "acme") -> None:
    """Publish ``job.cancel_requested`` as the gateway does."""
    event = make_event(
        EventType.JOB_CANCEL_REQUESTED,
        JobCancelRequestedPayload(),
        tenant=tenant,
        source="gateway",
        job_id=job_id,
        event_id=cancel_requested_event_id(job_id),
    )
    subject = subjects.job_event(tenant, job_id, "cancel_requested")
    await publish_event(js, subject, event)


async def tickets_done(js: JetStreamContext, stream: str, within_s: float = 20.0) -> None:
    """Until every ticket was acked (the work-queue stream is empty): each holder concluded its attempt."""
    for _ in range(int(within_s / 0.05)):
        if (await js.stream_info(stream)).state.messages == 0:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"tickets still held after {within_s} s")


class EventLog:
    """Every job event of a namespace, in stream order, with waits on conditions (no sleeps)."""

    def __init__(self) -> None:
        self.events: dict[str, list[EventEnvelope]] = defaultdict(list)
        self._changed = asyncio.Condition()
        self._sub: Any = None

    async def start(self, js: JetStreamContext, ns: Namespace) -> EventLog:
        """Follow ``jobs.>`` of ``ns`` from the start of the JOBS stream."""

        async def on_msg(msg: Any) -> None:
            event = EventEnvelope.from_json_bytes(msg.data)
            async with self._changed:
                self.events[event.job_id or ""].append(event)
                self._changed.notify_all()

        self._sub = await js.subscribe(
            ns.subject("jobs.>"), stream=ns.stream(streams.JOBS), cb=on_msg, ordered_consumer=True
        )
        return self

    async def stop(self) -> None:
        """Stop following."""
        await self._sub.unsubscribe()

    def types(self, job_id: str) -> list[str]:
        """The event types of one job, in order."""
        return [e.type for e in self.events[job_id]]

    def first(self, job_id: str, type_: str) -> EventEnvelope | None:
        """The first event of ``type_`` of one job."""
        return next((e for e in self.events[job_id] if e.type == type_), None)

    async def wait(self, condition: Callable[[], bool], within_s: float = 20.0) -> None:
        """Until ``condition()`` holds; TimeoutError after ``within_s`` seconds."""
        async with asyncio.timeout(within_s):
            async with self._changed:
                await self._changed.wait_for(condition)

    def ended(self, job_id: str) -> str | None:
        """The terminal event type of one job, if any."""
        terminal = {"job.succeeded", "job.failed", "job.canceled"}
        return next((t for t in self.types(job_id) if t in terminal), None)

    async def wait_ended(self, job_ids: list[str], within_s: float = 30.0) -> None:
        """Until every job has a terminal event."""
        await self.wait(lambda: all(self.ended(j) for j in job_ids), within_s)


async def read_record(kv: KeyValue, job_id: str, tenant: str = "acme") -> JobRecord:
    """The job's record in KV."""
    entry = await kv.get(tenant_key(tenant, job_id))
    assert entry.value is not None
    return JobRecord.model_validate_json(entry.value)


async def wait_record(
    kv: KeyValue, job_id: str, condition: Callable[[JobRecord], bool], within_s: float = 20.0
) -> JobRecord:
    """The record once ``condition`` holds (a KV watch: no polling)."""
    record = await latest_record(kv, "acme", job_id, condition, within_s)
    assert record is not None, f"no record of {job_id} within {within_s} s"
    assert condition(record), f"{job_id} never got there within {within_s} s: {record.status}"
    return record


async def fold_consumer_info(nc: NatsClient, stream: str, durable: str) -> dict[str, Any]:
    """A fold partition's consumer info as the server sends it (nats-py's has no priority groups)."""
    info: dict[str, Any] = await jetstream_api(nc, f"CONSUMER.INFO.{stream}.{durable}", None)
    return info


async def fold_pin(nc: NatsClient, stream: str, durable: str) -> str | None:
    """The pin id a fold partition's consumer is pinned to now (``None``: pinned to no one)."""
    return pinned_client(await fold_consumer_info(nc, stream, durable))


@asynccontextmanager
async def record_writes(kv: KeyValue, job_id: str, tenant: str = "acme") -> AsyncIterator[list[JobRecord]]:
    """Every write of the job's record from now on, in order (a KV watch), the current one first: what
    a test of the fold's batching checks, as the bucket's revision counts every key's writes."""
    watcher = await kv.watch(tenant_key(tenant, job_id))
    written: list[JobRecord] = []

    async def follow() -> None:
        async for entry in watcher:
            if entry is not None and entry.value:
                written.append(JobRecord.model_validate_json(entry.value))

    following = asyncio.ensure_future(follow())
    try:
        await wait_for(lambda: written, timeout_s=10, what="the watch's first record")
        yield written
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await watcher.stop()  # type: ignore[no-untyped-call]


class SteppedClock:
    """The ``time`` module as code sees it once its host's wall clock stepped ``step_s`` ahead (an NTP
    correction, a VM resumed): ``time.time`` jumps, ``time.monotonic`` does not. Set it as a module's
    ``time`` (monkeypatch) to step that module's clock alone."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s
        self.monotonic = time.monotonic

    def time(self) -> float:
        return time.time() + self.step_s
