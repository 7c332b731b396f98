"""Poison messages: an event or ticket no handler can process is dead-lettered, never wedges a consumer."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts import streams
from contracts.dead_letters import DeadLetter
from contracts.events.jobs import JobCancelRequestedPayload
from contracts.events.registry import EventType, make_event
from contracts.ids import new_id, tenant_key
from contracts.job_parts import JobStatus
from contracts.streams import JOBS, Declarations
from contracts.subjects import Namespace, Subjects
from services.dispatcher.__main__ import health_app
from services.dispatcher.consumers import ConsumerGuard
from services.dispatcher.fold.partitions import fold_durable, fold_settled
from services.dispatcher.running.tickets import dispatch_subject
from services.dispatcher.service import Dispatcher
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, submit, wait_record

S = JobStatus
WAITS_ON_AN_UPLOAD = {"kind": "pose", "inputs": {"video": {"upload_id": "upl_never"}}}


async def dead_letters(js: JetStreamContext, ns: Namespace, consumer: str | None, count: int) -> list[DeadLetter]:
    """The first ``count`` dead letters of ``consumer`` (``None``: of any dispatcher consumer; waits for them)."""
    subject = Subjects(ns).dead_letter("dispatcher", consumer) if consumer else ns.subject("deadletter.dispatcher.*")
    sub = await js.subscribe(subject, stream=ns.stream(streams.DEADLETTER))
    try:
        return [DeadLetter.from_message(await sub.next_msg(timeout=30)) for _ in range(count)]
    finally:
        await sub.unsubscribe()


async def healthz(dispatcher: Dispatcher) -> dict[str, object]:
    transport = httpx.ASGITransport(app=health_app(dispatcher))
    async with httpx.AsyncClient(transport=transport, base_url="http://dispatcher") as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


async def health_once_counted(dispatcher: Dispatcher, consumer: str) -> dict[str, object]:
    """``/healthz`` once it counts a dead letter of ``consumer``: the count goes up when the dead letter's
    publish is acked, and a reader of the stream can see the letter before that (a CI run read ``{}``)."""

    async def counted() -> dict[str, object] | None:
        health = await healthz(dispatcher)
        dead = health["dead_lettered"]
        return health if isinstance(dead, dict) and consumer in dead else None

    health: dict[str, object] = await wait_for(counted, 10, f"a dead letter of {consumer} counted")
    return health


async def test_an_event_with_a_naive_time_is_dead_lettered_at_once_and_the_fold_goes_on(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    event_log: EventLog,
) -> None:
    dispatcher = await start_dispatcher({"pose": local_route("noop")}, fold_partitions=0)  # dead letters name JOBS
    waiting = await submit(js, jobs_kv, subjects, WAITS_ON_AN_UPLOAD, tenant="evil")
    await event_log.wait(lambda: "job.created" in event_log.types(waiting))
    cancel = make_event(
        EventType.JOB_CANCEL_REQUESTED, JobCancelRequestedPayload(), tenant="evil", source="gateway", job_id=waiting
    )
    naive = json.loads(cancel.to_json_bytes()) | {"time": "2026-11-22T10:00:00"}  # no timezone
    raw = json.dumps(naive).encode()
    subject = subjects.job_event("evil", waiting, "cancel_requested")
    await js.publish(subject, raw)
    job = await submit(js, jobs_kv, subjects, POSE)
    assert (await wait_record(jobs_kv, job, lambda r: r.terminal)).status is S.SUCCEEDED
    [letter] = await dead_letters(js, namespace, "dispatcher-jobs", 1)
    assert (letter.subject.rpartition(".")[0], letter.deliveries, letter.data) == (subject, 1, raw)  # its slot token
    assert "time" in letter.error
    assert (await health_once_counted(dispatcher, "dispatcher-jobs"))["dead_lettered"] == {"dispatcher-jobs": 1}


async def test_a_poison_event_is_dead_lettered_after_max_deliver_and_other_tenants_jobs_succeed(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = await start_dispatcher(
        {"pose": local_route("noop")}, event_max_deliver=3, event_retry_delay_s=0.05, fold_partitions=0
    )
    broken = new_id("job")
    await jobs_kv.put(tenant_key("evil", broken), b'{"not": "a job record"}')  # every fold of it raises
    cancel = make_event(
        EventType.JOB_CANCEL_REQUESTED, JobCancelRequestedPayload(), tenant="evil", source="gateway", job_id=broken
    )
    subject = subjects.job_event("evil", broken, "cancel_requested")
    ack = await js.publish(subject, cancel.to_json_bytes())
    jobs = [await submit(js, jobs_kv, subjects, POSE) for _ in range(3)]
    for job in jobs:
        assert (await wait_record(jobs_kv, job, lambda r: r.terminal)).status is S.SUCCEEDED
    [letter] = await dead_letters(js, namespace, "dispatcher-jobs", 1)
    assert (letter.subject.rpartition(".")[0], letter.sequence, letter.deliveries) == (subject, ack.seq, 3)
    assert (letter.stream, letter.consumer) == (namespace.stream(streams.JOBS), "dispatcher-jobs")
    assert letter.data == cancel.to_json_bytes()
    assert "UnreadableRecordError" in letter.error  # no failed record can be made of it: see test_record_repair
    health = await health_once_counted(dispatcher, "dispatcher-jobs")
    assert health["dead_lettered"] == {"dispatcher-jobs": 1}
    assert health["handler_errors"] == {"dispatcher-jobs": 3}
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and "dispatcher-jobs" in r.getMessage()]
    failures = [r for r in logged if "failed on delivery" in r.getMessage()]
    assert [r.exc_info is not None for r in failures] == [True, True, True]  # each with its traceback
    assert [r for r in logged if "dead-lettered" in r.getMessage()]


async def test_a_malformed_ticket_is_dead_lettered_and_its_kind_keeps_running(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
) -> None:
    dispatcher = await start_dispatcher({"pose": local_route("noop", concurrency=1)}, ticket_retry_delay_s=0.05)
    await js.publish(dispatch_subject(namespace, "pose"), b'{"tenant": "acme"}')
    job = await submit(js, jobs_kv, subjects, POSE)
    assert (await wait_record(jobs_kv, job, lambda r: r.terminal)).status is S.SUCCEEDED
    [letter] = await dead_letters(js, namespace, "dispatch-pose", 1)
    assert letter.data == b'{"tenant": "acme"}'
    assert letter.deliveries == 1
    assert (await health_once_counted(dispatcher, "dispatch-pose"))["dead_lettered"] == {"dispatch-pose": 1}


async def test_every_consumer_has_bounded_redeliveries(
    start_dispatcher: StartDispatcher, js: JetStreamContext, namespace: Namespace
) -> None:
    dispatcher = await start_dispatcher(
        {"pose": local_route("noop")}, event_max_deliver=4, ticket_max_deliver=9, fold_max_deliver=50
    )
    jobs, dispatch = namespace.stream(streams.JOBS), dispatcher.dispatch_stream
    # a fold partition's bound is fold_max_deliver: only batches given back count there (test_fold_outage.py)
    folds = [(namespace.stream(JOBS), fold_durable(p), 50) for p in range(dispatcher.settings.fold_partitions)]
    assert folds  # the partitioned fold is the default
    for stream, durable, limit in (*folds, (jobs, "dispatcher-uploads", 4)):
        assert (await js.consumer_info(stream, durable)).config.max_deliver == limit
    assert (await js.consumer_info(dispatch, "dispatch-pose")).config.max_deliver == 9


async def test_a_message_the_server_stops_redelivering_is_dead_lettered_from_its_advisory(
    nc: NatsClient, js: JetStreamContext, declared: Declarations, namespace: Namespace, subjects: Subjects
) -> None:
    """The handler never gave up on it (it crashed or hung each time): the MAX_DELIVERIES advisory does."""
    stream = namespace.stream(streams.JOBS)
    config = ConsumerConfig(durable_name="probe", max_deliver=2, ack_wait=0.3, filter_subject=subjects.all_jobs())
    await js.add_consumer(stream, config=config)
    guard = ConsumerGuard(js, subjects)
    watch = await guard.watch_max_deliveries(nc, stream, "probe")
    ack = await js.publish(subjects.job_event("acme", "job_1", "log"), b"never handled")
    sub = await js.pull_subscribe_bind("probe", stream)
    try:
        for _ in range(2):  # delivered twice, never acked: a crashed or hung handler
            [msg] = await sub.fetch(1, timeout=10)
            assert msg.data == b"never handled"
        third = asyncio.create_task(sub.fetch(1, timeout=5))  # the consumer keeps pulling, as a pull loop does
        [letter] = await dead_letters(js, namespace, "probe", 1)
        with pytest.raises(nats.errors.TimeoutError):
            await third  # not delivered a third time
    finally:
        await watch.unsubscribe()
        await sub.unsubscribe()
    assert (letter.sequence, letter.deliveries, letter.data) == (ack.seq, 2, b"never handled")
    assert "never acknowledged" in letter.error
    assert guard.metrics()["dead_lettered"] == {"probe": 1}


async def test_in_a_partition_a_poison_event_is_dead_lettered_after_max_deliver_and_the_fold_goes_on(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
) -> None:
    """The partitioned fold (the default) keeps the serial fold's rules: max_deliver tries, then the dead letter."""
    dispatcher = await start_dispatcher({"pose": local_route("noop")}, event_max_deliver=3, event_retry_delay_s=0.05)
    assert dispatcher.settings.fold_partitions > 0
    broken = new_id("job")
    await jobs_kv.put(tenant_key("evil", broken), b'{"not": "a job record"}')  # every fold of it raises
    cancel = make_event(
        EventType.JOB_CANCEL_REQUESTED, JobCancelRequestedPayload(), tenant="evil", source="gateway", job_id=broken
    )
    await js.publish(subjects.job_event("evil", broken, "cancel_requested"), cancel.to_json_bytes())
    jobs = [await submit(js, jobs_kv, subjects, POSE) for _ in range(3)]
    for job in jobs:
        assert (await wait_record(jobs_kv, job, lambda r: r.terminal)).status is S.SUCCEEDED
    [letter] = await dead_letters(js, namespace, None, 1)  # which partition the job hashes to is the server's
    consumer = letter.consumer
    assert consumer in [fold_durable(p) for p in range(dispatcher.settings.fold_partitions)]
    health = await health_once_counted(dispatcher, consumer)
    assert (health["dead_lettered"], health["handler_errors"]) == ({consumer: 1}, {consumer: 3})
    assert (letter.stream, letter.deliveries) == (namespace.stream(JOBS), 3)
    assert f".evil.{broken}.cancel_requested." in letter.subject  # as JOBS stores it, with its slot token
    assert letter.data == cancel.to_json_bytes()
    assert "UnreadableRecordError" in letter.error  # no failed record can be made of it: see test_record_repair
    partitions = dispatcher.settings.fold_partitions
    await wait_for(lambda: fold_settled(js, namespace, partitions), timeout_s=30, what="the fold acked it")
