"""The notifier SIGKILLed during 5,000 events to 3 endpoints: after a restart nothing is missing.

The notifier runs as a real subprocess (``python -m services.notifier``). Deliveries are at least
once: a duplicate carries the same ``webhook-id``; deduplicated by id, every endpoint has every
event, and each job's events arrived in stream order at each endpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.receivers import Receiver, serve_fast
from bench.harness.secrets import SIGNING_SECRET
from bench.harness.waiting import wait_for
from contracts.events.registry import EventType, job_event_name
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from tests.conftest import ROOT
from tests.support.events import create_endpoint, job_event
from tests.support.notifier import fanout_consumer_exists

pytestmark = [pytest.mark.slow, pytest.mark.timeout(200)]
JOBS_N, PER_JOB = 50, 100
PATHS = ("/a", "/b", "/c")


class NotifierProcess:
    """``python -m services.notifier`` with test settings; its output goes to a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.notifier"], cwd=ROOT, env=self.env, stdout=out, stderr=out
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def notifier_process(tmp_path: Path, nats_server: EmbeddedNats, namespace: Namespace) -> Iterator[NotifierProcess]:
    """The notifier as a subprocess (not started), stopped at the end."""
    env = {
        **os.environ,
        "GPURELAY_PROFILE": "test",
        "GPURELAY_DATA_DIR": str(tmp_path / "data"),
        "GPURELAY_NATS_URL": nats_server.url,
        "GPURELAY_NAMESPACE": namespace.name,
        "GPURELAY_SIGNING_SECRET": SIGNING_SECRET,
        "GPURELAY_PORT": "0",
        "GPURELAY_LOG_LEVEL": "WARNING",
        "GPURELAY_WEBHOOK_ALLOW_HOSTS": json.dumps(["127.0.0.1"]),
        "GPURELAY_WEBHOOK_RETRY_SCHEDULE_S": json.dumps([0, 0.2, 0.5, 1, 1, 2, 2, 5, 5]),
        "GPURELAY_WEBHOOK_ACK_WAIT_S": "2",
        "GPURELAY_WEBHOOK_TIMEOUT_S": "1",
    }
    process = NotifierProcess(env, tmp_path / "notifier.log")
    yield process
    process.stop()


async def test_sigkill_during_5000_events_loses_none(
    notifier_process: NotifierProcess,
    js: JetStreamContext,
    subjects: Subjects,
    namespace: Namespace,
    webhooks_kv: KeyValue,
) -> None:
    rx = Receiver()
    server, base = await serve_fast(rx)
    for path in PATHS:
        await create_endpoint(webhooks_kv, "acme", f"{base}{path}")
    notifier_process.start()
    await wait_for(lambda: fanout_consumer_exists(js, namespace), timeout_s=30, what="the notifier started")

    order: dict[str, tuple[str, int]] = {}
    futures = []
    for j in range(JOBS_N):
        job_id = f"job_kill{j:03d}"
        for i in range(PER_JOB):
            event = job_event("acme", job_id, EventType.JOB_LOG)
            order[event.id] = (job_id, i)
            subject = subjects.job_event("acme", job_id, job_event_name(event.type))
            futures.append(await js.publish_async(subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.id}))
    await asyncio.gather(*futures)

    await wait_for(lambda: len(rx.received) >= 1500, timeout_s=60, what="deliveries under way", every_s=0.05)
    notifier_process.kill()
    before = len(rx.received)
    notifier_process.start()

    import time

    t0 = time.monotonic()
    last = [0.0]

    def complete() -> bool:
        if time.monotonic() - last[0] > 3:
            last[0] = time.monotonic()
            print(round(time.monotonic() - t0, 1), [rx.unique(p) for p in PATHS], len(rx.received), flush=True)
        return all(rx.unique(path) >= len(order) for path in PATHS)

    await wait_for(complete, timeout_s=110, what="every event at every endpoint", every_s=0.2)
    assert before < len(order) * len(PATHS)  # the kill happened mid-way
    for path in PATHS:
        ids = rx.ids(path)
        assert set(ids) == order.keys()
        first_seen: dict[str, int] = {}
        for event_id in ids:
            first_seen.setdefault(event_id, len(first_seen))
        per_job: dict[str, list[int]] = {}
        for event_id in sorted(first_seen, key=first_seen.__getitem__):
            job_id, index = order[event_id]
            per_job.setdefault(job_id, []).append(index)
        assert all(indexes == sorted(indexes) for indexes in per_job.values()), f"order broken at {path}"
    server.close()
