"""A local run whose attempt was dispatched again stores nothing more and stops.

Every event of a local run is fenced by its attempt's ``job.dispatched``
(:mod:`modal_workers.runtime.sinks.attempt_fence`). A pool process whose dispatcher stood still (or whose host
was cut off) while another replica gave its attempt up and dispatched the job again went on running: the
network-fault suite, with a core kept busy, found its log lines and a heartbeat stored seconds after the
next attempt had started, two attempts of one job alive at once. Now its first event after the new
dispatch is refused, the run is cancelled, and its outcome says ``superseded``.

The workloads here wait for the test to dispatch the job again mid-run (events, not sleeps). The cluster
test holds that the refusal a clustered leader gives while its fence's mark is not yet cleared (10164) is
not taken for a new dispatch: a run's events, sent one after the other, are all stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from contracts.events.jobs import JobLogPayload
from contracts.events.registry import EventType, make_event
from contracts.runs import RunRequest
from contracts.streams import declarations
from contracts.subjects import Namespace, Subjects
from modal_workers.runtime.sinks import NatsSink, attempt_fence
from modal_workers.runtime.worker_runtime import CancelledError, WorkerContext, WorkerRuntime
from services.common.nats.declarations import apply_declarations
from services.common.nats.server.cluster import NatsCluster, wait_current, wait_jetstream
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.attempts import dispatched
from tests.support.gateway import stored
from tests.support.lap import TENANT, closing, lap_request, nats_runtime
from tests.support.stopping import sigstop

pytestmark = pytest.mark.timeout(90)
TICKS = 2000
"""More log lines than a superseded run gets to send (each is a round trip to NATS)."""
PAUSE_S = 2.0
"""How long a cluster's followers stay paused while a write of the fence's subject is in flight."""


class Redispatch:
    """A workload's handshake with the test: it reports once, then waits until the job is dispatched again."""

    def __init__(self) -> None:
        self.reported, self.redispatched = threading.Event(), threading.Event()
        self.ticks_after = 0

    def halfway(self, ctx: WorkerContext) -> None:
        ctx.emit(EventType.JOB_LOG, JobLogPayload(level="info", message="before")).result(30)  # stored: the fence held
        self.reported.set()
        assert self.redispatched.wait(30)

    async def run_superseded(self, runtime: WorkerRuntime, workload: Any, js: Any, subjects: Subjects) -> RunRequest:
        """Run attempt 1 of a job with ``workload``, dispatch attempt 2 once it reported, and check that the
        run ended as superseded; attempt 1's request."""
        first = await _attempt_one(js, subjects)
        running = asyncio.create_task(asyncio.to_thread(runtime.run, workload, first))
        assert await asyncio.to_thread(self.reported.wait, 30)
        await dispatched(js, subjects, first.job_id, 2)
        self.redispatched.set()
        outcome = await running
        assert (outcome.status, outcome.error and outcome.error.code) == ("retryable", "superseded")
        return first


@pytest.fixture
def patient_runtime(
    nats_server: EmbeddedNats, namespace: Namespace, declared: Any, tmp_path: Path
) -> Iterator[WorkerRuntime]:
    """A runtime that would wait 10 minutes after a cancel for its dispatcher (the test's time limit is
    90 s): a superseded run must not wait for one."""
    with closing(nats_runtime(nats_server.url, namespace.name, tmp_path, cancel_grace_s=600)) as runtime:
        yield runtime


async def _attempt_one(js: Any, subjects: Subjects) -> RunRequest:
    request = lap_request({"video": "upl_x"})
    return request.model_copy(update={"dispatched_seq": await dispatched(js, subjects, request.job_id, 1)})


async def _worker_events_after(js: Any, namespace: Namespace, subjects: Subjects, job_id: str) -> list[str]:
    """The worker events stored after attempt 2's ``job.dispatched`` (``type:message``), in stream order."""
    events = await stored(js, namespace, subjects.job_events(TENANT, job_id))
    redispatch = next(i for i, e in enumerate(events) if e.type == EventType.JOB_DISPATCHED and e.attempt == 2)
    return [f"{e.type}:{e.data.get('message', '')}" for e in events[redispatch:] if e.source.startswith("worker")]


async def test_a_run_that_checks_for_a_cancel_stops_at_its_first_event_after_the_new_dispatch(
    patient_runtime: WorkerRuntime, js: Any, namespace: Namespace, subjects: Subjects
) -> None:
    handshake = Redispatch()

    def workload(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
        handshake.halfway(ctx)
        for tick in range(TICKS):
            ctx.log(f"tick {tick}")
            handshake.ticks_after += 1
            ctx.check_cancelled()
            threading.Event().wait(0.005)
        return {"ticks": TICKS}

    first = await handshake.run_superseded(patient_runtime, workload, js, subjects)
    assert handshake.ticks_after < TICKS  # it stopped, and did not wait for a dispatcher to end it
    assert await _worker_events_after(js, namespace, subjects, first.job_id) == []
    events = await stored(js, namespace, subjects.job_events(TENANT, first.job_id))
    assert [e.data.get("message") for e in events if e.type == EventType.JOB_LOG] == ["before"]


async def test_a_run_that_never_checks_runs_on_but_stores_nothing_more(
    patient_runtime: WorkerRuntime, js: Any, namespace: Namespace, subjects: Subjects, tmp_path: Path
) -> None:
    """Its log lines after the new dispatch and its ``job.succeeded`` are dropped: the first is refused,
    the rest not even sent. Its outcome says superseded, not succeeded. An artifact it stores once it knows
    is not written (the key is the job's: it would replace the later attempt's copy)."""
    handshake = Redispatch()
    refused: list[str] = []

    def workload(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
        handshake.halfway(ctx)
        for tick in range(3):
            ctx.log(f"after {tick}")
            handshake.ticks_after += 1
        assert ctx.cancel_event.wait(30)  # the first line's refusal reached the run
        try:
            ctx.artifact("out.json", b"{}")
        except CancelledError as exc:
            refused.append(str(exc))
        return {"ok": True}

    first = await handshake.run_superseded(patient_runtime, workload, js, subjects)
    assert handshake.ticks_after == 3
    assert await _worker_events_after(js, namespace, subjects, first.job_id) == []
    assert refused == [f"attempt 1 of job {first.job_id} was dispatched again"]
    assert not await asyncio.to_thread(lambda: list(tmp_path.rglob("out.json")))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three clustered nats-servers (no power is cut here: synced every 2 minutes)."""
    with NatsCluster(tmp_path_factory.mktemp("cluster"), sync_interval="2m") as nodes:
        asyncio.run(wait_jetstream(nodes.url, 30))
        yield nodes


@contextlib.asynccontextmanager
async def replicated(cluster: NatsCluster, name: str) -> AsyncIterator[tuple[Any, Subjects]]:
    """Namespace ``name``'s streams on ``cluster``, three replicas each: a JetStream context and its subjects."""
    ns = Namespace(name)
    nc = await nats.connect(cluster.url.split(","), max_reconnect_attempts=-1)
    try:
        js = nc.jetstream(timeout=10)
        mib64 = 64 * 1024 * 1024
        await apply_declarations(js, declarations(ns, frames_max_bytes=mib64, telemetry_max_bytes=mib64, replicas=3))
        await wait_current(js, [ns.stream("JOBS")], 30)
        yield js, Subjects(ns)
    finally:
        await nc.close()


async def test_on_a_cluster_every_event_of_a_run_is_stored(cluster: NatsCluster, tmp_path: Path) -> None:
    """JOBS with three replicas; a run sends 300 log lines, one after the other, each fenced on the same
    ``job.dispatched``: none is taken for superseded, all are stored, and the run succeeds."""
    async with replicated(cluster, "cluster") as (js, subjects):

        def workload(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
            for line in range(300):
                ctx.log(f"line {line}")
            return {"ok": True}

        first = await _attempt_one(js, subjects)
        with closing(nats_runtime(cluster.url, subjects.ns.name, tmp_path, cancel_grace_s=600)) as runtime:
            outcome = await asyncio.to_thread(runtime.run, workload, first)
        assert outcome.status == "succeeded", outcome
        events = await stored(js, subjects.ns, subjects.job_events(TENANT, first.job_id))
        assert [e.data["message"] for e in events if e.type == EventType.JOB_LOG] == [f"line {n}" for n in range(300)]
        assert [e.type for e in events][-1] == EventType.JOB_SUCCEEDED


async def test_an_event_sent_while_the_next_dispatch_replicates_waits_for_it_and_is_refused(
    cluster: NatsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JOBS' two followers paused while attempt 2's ``job.dispatched`` is proposed: attempt 1's next log
    line is refused without a comparison (10164: the dispatch, which follows the job's last one, marks the
    fence's subject in flight) and, once the followers are back and attempt 2's dispatch is stored, refused
    as superseded. Before the dispatch followed the last one, the leader judged the line against the
    dispatch it was replacing, and stored it after attempt 2's."""
    rechecks: list[bool] = []
    recheck = attempt_fence._dispatched_since

    async def counted(*args: Any) -> bool:
        rechecks.append(await recheck(*args))
        return rechecks[-1]

    monkeypatch.setattr(attempt_fence, "_dispatched_since", counted)
    async with replicated(cluster, "inflight") as (js, subjects):
        first = await _attempt_one(js, subjects)
        leader = (await js.stream_info(subjects.ns.stream("JOBS"))).cluster
        assert leader is not None
        followers = [n for n in cluster.nodes if n.server_name != leader.leader]
        lead = cluster.node(leader.leader or "").url  # both writers on the leader: none waits in a paused node
        dispatcher = await nats.connect(lead)
        sink = await NatsSink.connect(lead, subjects.ns.name)
        try:
            await _late_line(first, js, dispatcher.jetstream(timeout=10), sink, subjects, followers)
        finally:
            await sink.close()
            await dispatcher.close()
        assert rechecks[-1]  # refused as superseded in the end (and tried again before, while the fence held)
        assert not any(rechecks[:-1])


async def _late_line(
    first: RunRequest, js: Any, dispatcher: Any, sink: NatsSink, subjects: Subjects, followers: list[EmbeddedNats]
) -> None:
    """Attempt 2 dispatched (by ``dispatcher``) and, while it replicates, a log line of attempt 1 sent:
    refused as superseded once the followers are back, and not stored."""
    line = make_event(
        EventType.JOB_LOG, JobLogPayload(level="info", message="late"), tenant=TENANT, source="worker/lap_compare",
        job_id=first.job_id, kind="lap_compare", attempt=1,
    )  # fmt: skip
    for node in followers:
        sigstop(node.pid or 0)
    try:
        redispatching = asyncio.create_task(dispatched(dispatcher, subjects, first.job_id, 2))
        await asyncio.sleep(0.5)  # its proposal is in the leader's hands, not committed
        sending = asyncio.create_task(sink.send("log", line, dispatched_seq=first.dispatched_seq))
        await asyncio.sleep(PAUSE_S)
        assert not sending.done(), sending
    finally:
        for node in followers:
            os.kill(node.pid or 0, signal.SIGCONT)
    with pytest.raises(attempt_fence.AttemptSuperseded):
        await asyncio.wait_for(sending, 60)
    await asyncio.wait_for(redispatching, 60)
    events = await stored(js, subjects.ns, subjects.job_events(TENANT, first.job_id))
    assert [e.id for e in events if e.type == EventType.JOB_LOG] == []
