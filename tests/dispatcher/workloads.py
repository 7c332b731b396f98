"""Small workloads for the dispatcher tests, run by the local pool (``tests.dispatcher.workloads:...``).

Tests steer them with the job's attempt number and with ``GPURELAY_TEST_MARKS`` (a directory
where a workload leaves one file per run, so a test can count runs).
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from modal_workers.runtime.worker_runtime import PermanentError, WorkerContext


def _mark(ctx: WorkerContext) -> None:
    marks = os.environ.get("GPURELAY_TEST_MARKS")
    if marks:
        name = f"{ctx.request.job_id}.a{ctx.attempt}.{uuid.uuid4().hex[:6]}"
        (Path(marks) / name).write_text(str(os.getpid()))


def noop(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Succeeds at once."""
    _mark(ctx)
    return {"ok": True}


def quick(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Reports progress and one artifact, then succeeds."""
    _mark(ctx)
    ctx.progress(0.5, "half")
    ctx.artifact("out.txt", b"hello", "text/plain")
    time.sleep(0.05)
    return {"ok": True, "attempt": ctx.attempt}


def reports_nine(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Reports progress nine times at once, then succeeds (what the throttle sends of them, a test counts)."""
    for step in range(1, 10):
        ctx.progress(step / 10, f"step {step}")
    return {"ok": True}


def slow_first(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Attempt 1 runs (with heartbeats) until killed or timed out; later attempts succeed."""
    _mark(ctx)
    ctx.progress(0.1, "started")
    if ctx.attempt == 1:
        time.sleep(60)
    return {"attempt": ctx.attempt}


def scratch_first(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Writes to its work folder and to a temporary file of its own (as a video tool does); attempt 1
    then runs until killed, later attempts succeed. Reports where both files are."""
    _mark(ctx)
    (ctx.work_dir / "input.mp4").write_bytes(b"\0" * 4096)
    handle, tool_file = tempfile.mkstemp(suffix=".png")
    os.close(handle)
    ctx.progress(0.1, "started", {"work_dir": str(ctx.work_dir), "tool_file": tool_file})
    if ctx.attempt == 1:
        time.sleep(60)
    return {"attempt": ctx.attempt}


def ends_on_cancel(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Runs until its job's cancel is heard, then succeeds at once (ignoring it): its ending races the
    dispatcher's cancel (the worker hears the request straight away, the dispatcher through its record)."""
    _mark(ctx)
    ctx.cancel_event.wait(30)
    return {"ok": True}


def sleeps(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Runs for 0.4 s."""
    _mark(ctx)
    time.sleep(0.4)
    return {"ok": True}


def forever(spec: Any, ctx: WorkerContext) -> None:
    """Never ends on its own."""
    _mark(ctx)
    time.sleep(600)


def bad_input(spec: Any, ctx: WorkerContext) -> None:
    """Fails permanently."""
    _mark(ctx)
    raise PermanentError("bad_video", "the file is not a video")


def freeze_first(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Attempt 1 stops itself (SIGSTOP: alive, silent); later attempts succeed."""
    _mark(ctx)
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGSTOP)
    return {"attempt": ctx.attempt}


def _stage(ctx: WorkerContext, name: str) -> dict[str, Any]:
    _mark(ctx)
    received = [a.name for a in ctx.inputs]
    for i in range(1, 4):
        ctx.progress(i / 3, f"{name} {i}/3")
        time.sleep(0.11)
    ctx.artifact(f"{name}.txt", ",".join(received).encode(), "text/plain")
    return {"stage": name, "inputs": received}


def colmap(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Pipeline stage 1."""
    return _stage(ctx, "colmap")


def train(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Pipeline stage 2."""
    return _stage(ctx, "train")


def render(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Pipeline stage 3."""
    return _stage(ctx, "render")


def spawns_and_sleeps(spec: Any, ctx: WorkerContext) -> None:
    """Starts a child of its own (``sleep 600``), writes ``{job}.pids`` (its pid and the child's), sleeps."""
    import subprocess

    child = subprocess.Popen(["sleep", "600"])
    marks = Path(os.environ["GPURELAY_TEST_MARKS"])
    (marks / f"{ctx.request.job_id}.pids.tmp").write_text(f"{os.getpid()} {child.pid}")
    (marks / f"{ctx.request.job_id}.pids.tmp").replace(marks / f"{ctx.request.job_id}.pids")
    time.sleep(600)
