"""Acceptance: queued jobs carry their position in their tenant's queue and an ETA from observed run times."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import streams
from contracts.subjects import Namespace, Subjects
from services.common.auth.apikeys import ApiKeyStore
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.running.tickets import dispatch_subject
from services.notifier.app import create_app
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, EventLog, local_route, submit, wait_record
from tests.support.http import bound_socket, serve
from tests.support.notifier import notifier_settings
from tests.support.scheduling import InstantBackend, entries_queued


@pytest.fixture
def notifier_url(nats_server: EmbeddedNats, namespace: Namespace, tmp_path: Path) -> Iterator[str]:
    """The notifier (its SSE route) served on loopback."""
    sock = bound_socket()
    with serve(create_app(notifier_settings(nats_server.url, namespace, tmp_path / "notifier")), sock):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.serial  # waits measured against run times of 0.2 s: other workers' load stretched one 6x (CI)
async def test_the_eta_after_20_runs_is_within_half_of_the_actual_wait(
    start_dispatcher: StartDispatcher,
    instant: InstantBackend,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    instant.run_s = 0.2  # fixed-duration runs
    instant.gate.set()
    await start_dispatcher({"pose": local_route("noop", concurrency=2)}, backends={"local": instant})
    warmup = [await submit(js, jobs_kv, subjects, POSE) for _ in range(20)]
    await event_log.wait_ended(warmup, 30)
    # Each job queued before the next is submitted: a place announced while an earlier job of a
    # burst is still in another fold partition undercounts (places never go back up).
    jobs: list[str] = []
    for _ in range(10):
        jobs.append(await submit(js, jobs_kv, subjects, POSE))
        await event_log.wait(lambda: event_log.first(jobs[-1], "job.queued") is not None, 10)
    await event_log.wait_ended(jobs, 30)
    checked = []
    for job in jobs:
        said, dispatched = event_log.first(job, "job.queued"), event_log.first(job, "job.dispatched")
        assert said is not None
        assert dispatched is not None
        eta, waited = said.data["eta_s"], (dispatched.time - said.time).total_seconds()
        assert eta is not None  # 20 runs observed
        if waited >= 0.4:  # two runs or more: shorter waits are within the noise of one start
            checked.append((round(eta, 2), round(waited, 2)))
            assert abs(eta - waited) <= 0.5 * waited, checked
    assert len(checked) >= 4, checked


async def test_a_waiting_jobs_position_only_goes_down_on_sse_and_its_record_carries_it(
    start_dispatcher: StartDispatcher,
    instant: InstantBackend,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
    notifier_url: str,
) -> None:
    instant.run_s = 0.05
    dispatcher = await start_dispatcher(
        {"pose": local_route("noop", concurrency=1)}, backends={"local": instant}, queue_position_interval_s=0.1
    )
    ahead = [await submit(js, jobs_kv, subjects, POSE) for _ in range(6)]
    # The fold runs in partitions, so jobs submitted together are queued in any order: let the six
    # ahead be queued first. Then one of them holds the kind's only slot (the gate keeps it from
    # running), so five wait ahead of the last — or all six if its place was taken before that claim.
    await entries_queued(dispatcher, "pose", len(ahead))
    last = await submit(js, jobs_kv, subjects, POSE)
    await entries_queued(dispatcher, "pose", len(ahead) + 1)
    record = await wait_record(jobs_kv, last, lambda r: r.queue is not None)
    assert record.queue is not None
    first_place = record.queue.position
    assert first_place in (6, 7)
    _, key = await ApiKeyStore(await js.key_value(namespace.bucket(streams.KV_APIKEYS))).create("acme")
    positions: list[int] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=notifier_url, headers=headers, timeout=30) as http,
        http.stream("GET", f"/v1/jobs/{last}/events") as response,
    ):
        assert response.status_code == 200
        instant.gate.set()
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line.removeprefix("data:"))
            if event["type"] in ("job.queued", "job.position"):  # the first place comes with job.queued
                positions.append(event["data"]["position"])
            if event["type"] == "job.dispatched":
                break
    # As queued: six ahead, or five once one of them held the slot. A place bettered by the time its
    # entry was queued follows at once as a job.position, so the record may already show that one.
    assert positions[0] in (6, 7)
    assert first_place in positions[:2]
    assert len(positions) >= 3  # moved up as the jobs ahead started (updates coalesce)
    assert positions == sorted(set(positions), reverse=True)  # strictly down
    dispatched = await wait_record(jobs_kv, last, lambda r: r.status != "queued")
    assert dispatched.queue is None


async def test_every_queued_job_is_told_its_place_before_its_ticket_goes_out(
    start_dispatcher: StartDispatcher,
    instant: InstantBackend,
    nc: NatsClient,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    namespace: Namespace,
    subjects: Subjects,
    event_log: EventLog,
) -> None:
    sent: list[tuple[str, str]] = []  # (job, "queued" | "ticket") as the dispatcher's connection sent them

    async def on_msg(msg: Msg) -> None:
        if msg.subject.endswith(".queued"):
            sent.append((msg.subject.split(".")[-2], "queued"))
        elif msg.subject == dispatch_subject(namespace, "pose"):
            sent.append((json.loads(msg.data)["job_id"], "ticket"))

    tap = await nc.subscribe(namespace.subject(">"), cb=on_msg)
    instant.gate.set()  # every job starts at once
    await start_dispatcher({"pose": local_route("noop", concurrency=4)}, backends={"local": instant})
    jobs = [await submit(js, jobs_kv, subjects, POSE) for _ in range(20)]
    await event_log.wait_ended(jobs, 30)
    await tap.unsubscribe()
    for job in jobs:
        assert [what for who, what in sent if who == job][:2] == ["queued", "ticket"], sent
        types = event_log.types(job)
        assert types[:2] == ["job.created", "job.queued"], types
        queued = event_log.first(job, "job.queued")
        assert queued is not None
        assert queued.data["position"] >= 1  # its place came with job.queued, before its ticket
        assert types.index("job.queued") < types.index("job.dispatched"), types
        if queued.data["position"] == 1:  # a place only ever goes down: nothing more to say
            assert "job.position" not in types, types
