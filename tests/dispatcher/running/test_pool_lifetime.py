"""With ``local_workers_die_with_dispatcher`` (what ``gpurelay dev`` sets), a SIGKILLed dispatcher
takes its busy pool workers along, and whatever they started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.subjects import Subjects
from services.common.processes import is_running
from services.dispatcher.settings import DispatcherSettings
from tests.support.dispatcher import POSE, W, submit

ROOT = Path(__file__).resolve().parents[3]
ROUTES = f"""
profiles:
  dev:
    pose: {{backend: local, function: pose, local: "{W}:spawns_and_sleeps", timeout_s: 600, concurrency: 4,
           price_per_gpu_hour: 1.0}}
"""


async def _gone(pids: list[int], timeout_s: float) -> list[int]:
    """Poll until none of ``pids`` runs; those still running at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left := [pid for pid in pids if is_running(pid)]) and loop.time() < deadline:  # noqa: ASYNC110 - other processes' exits
        await asyncio.sleep(0.05)
    return left


@pytest.mark.timeout(120)
async def test_a_sigkilled_dispatcher_takes_its_busy_workers_and_their_children(
    settings: DispatcherSettings, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    table = tmp_path / "routes.yaml"
    table.write_text(ROUTES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
    env.update(
        GPURELAY_PROFILE="test",
        GPURELAY_NATS_URL=settings.nats_url,
        GPURELAY_NAMESPACE=settings.namespace,
        GPURELAY_DATA_DIR=str(settings.data_dir),
        GPURELAY_ROUTE_TABLE=str(table),
        GPURELAY_LOCAL_POOL_SIZE="1",
        GPURELAY_LOCAL_WORKERS_DIE_WITH_DISPATCHER="true",
        GPURELAY_PORT="0",
        GPURELAY_LOG_LEVEL="WARNING",
        GPURELAY_TEST_MARKS=str(marks),
        PYTHONPATH=str(ROOT),
    )
    dispatcher = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.dispatcher", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    pids: list[int] = []
    try:
        assert dispatcher.stdout is not None
        async with asyncio.timeout(60):
            assert (await dispatcher.stdout.readline()).strip() == b"dispatcher ready"
        job = await submit(js, jobs_kv, subjects, POSE)
        pid_file = marks / f"{job}.pids"
        async with asyncio.timeout(30):
            while not pid_file.exists():  # noqa: ASYNC110 - written by the workload in another process
                await asyncio.sleep(0.05)
        pids = [int(pid) for pid in pid_file.read_text().split()]
        assert all(is_running(pid) for pid in pids)
        dispatcher.kill()
        assert await _gone(pids, timeout_s=15) == [], "a worker or its child outlived the dispatcher"
        async with asyncio.timeout(15):  # its fork server and resource tracker, which hold its stdout, end too
            await dispatcher.stdout.read()
    finally:
        with contextlib.suppress(ProcessLookupError):
            dispatcher.kill()
        for pid in pids:  # whatever a failure left running (a worker holds our pipe to the dispatcher)
            with contextlib.suppress(ProcessLookupError):
                if is_running(pid):
                    os.kill(pid, signal.SIGKILL)
        await dispatcher.wait()
