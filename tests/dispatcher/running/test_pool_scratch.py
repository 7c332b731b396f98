"""A pool worker's temporary files go when the worker does: a worker killed mid-run (out of memory, a
SIGKILL) never reached the runtime's cleanup, and its job folder (inputs, frames: megabytes a run) stayed
in the system's temporary folder for good (CI left two a run). Each worker now works in a folder of its
own, which the pool removes once the worker is gone; a pool that starts removes what a dispatcher that
died left, but a worker of it that still runs keeps its folder."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.job_parts import JobStatus
from contracts.subjects import Subjects
from services.common.processes import scratch_folder
from services.dispatcher.running.scratch import PoolScratch, root_prefix, sweep_left_over
from tests.dispatcher.conftest import StartDispatcher
from tests.dispatcher.running.test_attempts import worker_pid
from tests.dispatcher.running.test_pool_processes import RESPAWN_S, gone, until
from tests.support.dispatcher import POSE, EventLog, local_route, submit, wait_record

pytestmark = pytest.mark.timeout(240)


async def test_a_killed_workers_files_are_removed_and_the_retry_works_in_a_folder_of_its_own(
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    event_log: EventLog,
    tmp_path: Path,
) -> None:
    base = tmp_path / "scratch"
    route = local_route("scratch_first", timeout_s=120)
    dispatcher = await start_dispatcher({"pose": route}, local_pool_size=1, local_worker_scratch_dir=base)
    assert dispatcher.pool is not None
    assert dispatcher.pool.scratch.root is not None
    root = dispatcher.pool.scratch.root
    assert root.parent == base
    assert root.name.startswith(f"{root_prefix()}{os.getpid()}-")
    job = await submit(js, jobs_kv, subjects, POSE)
    await event_log.wait(lambda: event_log.first(job, "job.progress") is not None)
    first = worker_pid(event_log, job)
    progress = event_log.first(job, "job.progress")
    assert progress is not None
    files = progress.data["metrics"]
    work_dir, tool_file = Path(files["work_dir"]), Path(files["tool_file"])
    folder = scratch_folder(root, first)
    assert work_dir.parent == folder
    assert tool_file.parent == folder
    assert (work_dir / "input.mp4").stat().st_size == 4096

    os.kill(first, signal.SIGKILL)  # as the kernel's OOM killer would: no cleanup runs
    assert await gone(first)
    record = await wait_record(jobs_kv, job, lambda r: r.terminal, RESPAWN_S)
    assert (record.status, record.attempt) == (JobStatus.SUCCEEDED, 2)
    assert await until(lambda: not folder.exists())  # removed in the background once the loss was seen
    second = worker_pid(event_log, job, 2)
    assert [p.name for p in root.iterdir()] == [scratch_folder(root, second).name]

    await dispatcher.pool.stop()
    assert not root.exists()
    assert list(base.iterdir()) == []


def test_a_started_pool_removes_what_dead_dispatchers_left_but_not_a_running_workers_folder(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead_pid = int(dead.stdout)  # a process that has ended
    here = root_prefix()
    left = tmp_path / f"{here}{dead_pid}-abc"
    (left / f"worker-{dead_pid}").mkdir(parents=True)
    (left / f"worker-{dead_pid}" / "frame.png").write_bytes(b"x")
    orphan = scratch_folder(left, os.getpid())  # a busy worker that outlived its dispatcher: still running
    orphan.mkdir()
    gone_too = tmp_path / f"{here}{dead_pid}-def" / f"worker-{dead_pid}"
    gone_too.mkdir(parents=True)
    alive = tmp_path / f"{here}{os.getpid()}-ghi" / f"worker-{dead_pid}"  # a running dispatcher's
    alive.mkdir(parents=True)
    elsewhere = tmp_path / f"{root_prefix('another-host')}{dead_pid}-jkl" / f"worker-{dead_pid}"  # its pids: not ours
    elsewhere.mkdir(parents=True)
    other = tmp_path / "someone-elses"
    other.mkdir()

    assert sweep_left_over(tmp_path) == 2
    kept = [left.name, alive.parent.name, elsewhere.parent.name, other.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    assert list(left.iterdir()) == [orphan]
    assert alive.exists()
    assert elsewhere.exists()

    scratch = PoolScratch(tmp_path)
    root = scratch.open()
    assert root.parent == tmp_path
    assert root.is_dir()
    asyncio.run(scratch.close())
    assert not root.exists()
    assert scratch.root is None
