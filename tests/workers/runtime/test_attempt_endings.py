"""One ending per attempt in the job's stream, whoever ends it and in whatever order the endings arrive.

A worker's ``job.succeeded`` and the dispatcher's ``job.retrying`` (it gave the attempt up: silent,
timed out) race when the worker's link is slow: bytes a killed worker left in a slow link reach the
server after the dispatcher's event. Both are published with the attempt's ``Nats-Msg-Id``
(:func:`contracts.event_ids.attempt_end_msg_id`), so the first stored wins; every event of a local run,
its ending too, is also fenced by its ``job.dispatched`` (a later attempt dispatched past the duplicate
window: test_superseded_attempt.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from bench.harness.secrets import INGEST_SECRET
from contracts.event_ids import worker_event_id
from contracts.events.jobs import JobSucceededPayload
from contracts.events.registry import ATTEMPT_ENDINGS, TERMINAL_JOB_EVENTS, EventType, make_event
from contracts.subjects import Namespace, Subjects
from modal_workers.runtime.sinks import IngestSink
from modal_workers.runtime.worker_runtime import WorkerContext, WorkerRuntime
from services.common.auth.ingest_tokens import mint_ingest_token
from tests.support.attempts import canceled, dispatched, retrying
from tests.support.gateway import Gateway, stored
from tests.support.lap import TENANT, closing, lap_request, local_storage

pytestmark = pytest.mark.timeout(60)


def quick(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Progress, then a result."""
    ctx.progress(0.5, "half")
    return {"ok": True}


async def _endings(js: JetStreamContext, ns: Namespace, subjects: Subjects, job_id: str) -> list[tuple[str, int]]:
    events = await stored(js, ns, subjects.job_events(TENANT, job_id))
    return [(e.type, e.attempt or 0) for e in events if e.type in ATTEMPT_ENDINGS]


async def test_an_attempt_dispatched_again_meanwhile_cannot_end_the_job(
    local_runtime: WorkerRuntime, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    """A local run's events are fenced by its attempt's job.dispatched: attempt 1, whose host was cut off
    while attempt 2 was dispatched, stores nothing (its job.started is refused, so it does not run: the
    outcome says superseded); attempt 2 runs and ends the job. Before the fence only its ending was
    dropped, and the rest of attempt 1 was stored after attempt 2 had begun."""
    first = lap_request({"video": "upl_x"})
    job_id = first.job_id
    first = first.model_copy(update={"dispatched_seq": await dispatched(js, subjects, job_id, 1)})
    second = first.model_copy(update={"attempt": 2, "dispatched_seq": await dispatched(js, subjects, job_id, 2)})
    outcome = await asyncio.to_thread(local_runtime.run, quick, first)
    assert (outcome.status, outcome.error and outcome.error.code) == ("retryable", "superseded")
    # its cancel watch is gone (a pool process serves many runs): looked at once the unwatch has run
    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(asyncio.sleep(0), local_runtime.loop))
    cancel = subjects.job_event(TENANT, job_id, "cancel_requested")
    assert cancel not in [sub.subject for sub in local_runtime.sink._nc._subs.values()]  # type: ignore[attr-defined]
    assert (await asyncio.to_thread(local_runtime.run, quick, second)).status == "succeeded"
    assert await _endings(js, namespace, subjects, job_id) == [("job.succeeded", 2)]
    events = await stored(js, namespace, subjects.job_events(TENANT, job_id))
    assert {e.attempt for e in events if e.source.startswith("worker")} == {2}


async def test_a_worker_ending_after_the_dispatcher_gave_its_attempt_up_is_not_stored(
    local_runtime: WorkerRuntime, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    """The make-test failure this reproduces: attempt 1's job.succeeded stored after its job.retrying and
    before attempt 2's job.dispatched passed the fence (attempt 1's dispatch was still the latest), and
    attempt 2 succeeded too: two job.succeeded in the stream, two webhooks, an SSE stream ending twice."""
    first = lap_request({"video": "upl_x"})
    job_id = first.job_id
    first = first.model_copy(update={"dispatched_seq": await dispatched(js, subjects, job_id, 1)})
    assert not (await retrying(js, subjects, job_id, 1)).duplicate
    assert (await asyncio.to_thread(local_runtime.run, quick, first)).status == "succeeded"  # its ending: late
    second = first.model_copy(update={"attempt": 2, "dispatched_seq": await dispatched(js, subjects, job_id, 2)})
    assert (await asyncio.to_thread(local_runtime.run, quick, second)).status == "succeeded"
    assert await _endings(js, namespace, subjects, job_id) == [("job.retrying", 1), ("job.succeeded", 2)]


async def test_the_dispatcher_giving_up_an_attempt_its_worker_ended_is_told_so(
    local_runtime: WorkerRuntime, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    """The other order: the worker's job.succeeded is stored first; the dispatcher's job.retrying is
    answered as a duplicate (of the worker's ending, at its sequence) and not stored, so no attempt 2."""
    request = lap_request({"video": "upl_x"})
    job_id = request.job_id
    request = request.model_copy(update={"dispatched_seq": await dispatched(js, subjects, job_id, 1)})
    assert (await asyncio.to_thread(local_runtime.run, quick, request)).status == "succeeded"
    ack = await retrying(js, subjects, job_id, 1)
    assert ack.duplicate
    assert await _endings(js, namespace, subjects, job_id) == [("job.succeeded", 1)]


async def _ending_through_the_route(gateway: Gateway, job_id: str) -> IngestSink:
    """Attempt 1's ``job.succeeded`` posted as a Modal worker posts it (its ingest token, its sink); the
    sink, closed."""
    token = mint_ingest_token(INGEST_SECRET.encode(), TENANT, job_id, 1, ttl_s=600)
    sink = IngestSink(f"{gateway.url}/v1/internal/jobs/{job_id}/events", token, backoff_s=0.01)
    ending = make_event(
        EventType.JOB_SUCCEEDED, JobSucceededPayload(result={"ok": True}), tenant=TENANT, source="worker/lap_compare",
        job_id=job_id, kind="lap_compare", attempt=1, event_id=worker_event_id(job_id, 1, "succeeded"),
    )  # fmt: skip
    try:
        await sink.send("succeeded", ending)
    finally:
        await sink.close()
    return sink


async def test_through_the_ingest_route_too(
    gateway: Gateway, js: JetStreamContext, namespace: Namespace, subjects: Subjects, tmp_path: Path
) -> None:
    """A Modal worker's ending (the ingest route, no fence: its job.dispatched follows the spawn) after its
    attempt's job.retrying is a duplicate: the route answers it as one, and the stream keeps one ending."""
    request = lap_request({"video": "upl_x"})
    job_id = request.job_id
    assert not (await retrying(js, subjects, job_id, 1)).duplicate
    sink = await _ending_through_the_route(gateway, job_id)
    assert await _endings(js, namespace, subjects, job_id) == [("job.retrying", 1)]
    token = mint_ingest_token(INGEST_SECRET.encode(), TENANT, job_id, 1, ttl_s=600)
    runtime = WorkerRuntime(lambda: IngestSink.create(sink.url, token), lambda: local_storage(tmp_path))
    with closing(runtime):  # a whole late run of attempt 1 through the route: its ending dropped too
        assert (await asyncio.to_thread(runtime.run, quick, request)).status == "succeeded"
    assert await _endings(js, namespace, subjects, job_id) == [("job.retrying", 1)]


async def test_an_ending_through_the_ingest_route_after_the_job_was_canceled_is_not_stored(
    gateway: Gateway, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    """A Modal worker's ending reaches the route after a cancel that ended another attempt (the fold's,
    its record lagging) or came more than the duplicate window before: no ``Nats-Msg-Id`` ties them, so
    the job's ``job.canceled`` fences it. The route answers it as a duplicate; the job ends once."""
    job_id = lap_request({"video": "upl_x"}).job_id
    assert not (await canceled(js, subjects, job_id, 2)).duplicate  # the fold ended attempt 2 (queued)
    await _ending_through_the_route(gateway, job_id)
    events = await stored(js, namespace, subjects.job_events(TENANT, job_id))
    assert [e.type for e in events if e.type in TERMINAL_JOB_EVENTS] == ["job.canceled"]
