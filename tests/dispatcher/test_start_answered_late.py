"""A dispatcher whose consumers' creation meets a JetStream that answers late makes them again instead of
failing its start.

A gateway on a loaded 3-node cluster exited during start-up in CI when one JetStream request went unanswered
within its time-out (5 s); a dispatcher's start made its consumers with one request each, unretried. Here
the server is stopped (SIGSTOP) for longer than that just as the dispatcher makes its uploads consumer, its
first fold partition's and its first ticket consumer; then a job runs through it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import nats
import pytest

from contracts.job_parts import JobStatus
from contracts.streams import KV_JOBS
from contracts.subjects import Namespace
from services.common.nats.declarations import declare_all
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.fold.partition import PartitionFold
from services.dispatcher.fold.serial import EventConsumer
from services.dispatcher.running.tickets import TicketConsumer
from services.dispatcher.service import Dispatcher
from tests.support.dispatcher import POSE, dispatcher_settings, local_route, submit, wait_record
from tests.support.scheduling import InstantBackend
from tests.support.stopping import stalled_at_first_call

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
PAUSE_S = 6.0
"""Longer than the dispatcher's JetStream time-out (nats-py's default, 5 s): its request goes unanswered."""


async def test_a_dispatcher_started_while_jetstream_answers_late_starts_and_runs_a_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = Namespace("late")
    server = EmbeddedNats(tmp_path / "nats").start()
    pid = server.pid
    assert pid is not None
    paused: list[str] = []
    for cls, name in ((EventConsumer, "uploads"), (PartitionFold, "fold"), (TicketConsumer, "tickets")):
        monkeypatch.setattr(cls, "start", stalled_at_first_call(pid, PAUSE_S, name, cls.start, paused))
    settings = dispatcher_settings(server.url, ns, tmp_path / "data")
    nc = await nats.connect(server.url)
    dispatcher: Dispatcher | None = None
    try:
        js = nc.jetstream(timeout=10)
        await declare_all(js, settings)
        worker = InstantBackend(js, settings.subjects)
        worker.gate.set()
        dispatcher = Dispatcher(settings, routes={"pose": local_route("noop")}, backends={"local": worker})
        await dispatcher.start()
        assert paused == ["uploads", "fold", "tickets"]
        jobs_kv = await js.key_value(ns.bucket(KV_JOBS))
        job_id = await submit(js, jobs_kv, settings.subjects, POSE)
        assert (await wait_record(jobs_kv, job_id, lambda r: r.terminal, 60)).status is JobStatus.SUCCEEDED
    finally:
        os.kill(pid, signal.SIGCONT)
        if dispatcher is not None:
            await dispatcher.stop()
        await nc.close()
        server.stop()
