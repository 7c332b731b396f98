"""Workloads of the fault suite, run by the dispatcher's local pool (``bench.harness.fault_workloads:...``).

Each logs numbered steps (``job.log`` "step 1", "step 2", ...) and returns how many it logged, so a
check can tell that none of an attempt's events went missing. ``GPURELAY_TEST_MARKS`` names a
directory where a run leaves ``{job_id}.a{attempt}.running`` as it starts; :func:`held` keeps
logging until the test writes ``go`` there, so a fault can be put exactly in the middle of a job,
and keeps its latest step number in ``{job_id}.step`` (a test can see that steps were logged while
NATS was down).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from modal_workers.runtime.worker_runtime import PermanentError, WorkerContext

STEP_S = 0.1
SHORT_STEPS = 5
HELD_MIN_STEPS = 3
HELD_MAX_STEPS = 1200
"""A held run that never sees ``go`` fails after this many steps (two minutes), never hangs."""


def _marks() -> Path | None:
    marks = os.environ.get("GPURELAY_TEST_MARKS")
    return Path(marks) if marks else None


def _running(ctx: WorkerContext) -> None:
    if (marks := _marks()) is not None:
        (marks / f"{ctx.request.job_id}.a{ctx.attempt}.running").write_text(str(os.getpid()))


def short(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Logs ``GPURELAY_TEST_STEPS`` steps (default ``SHORT_STEPS``), ``STEP_S`` apart, then succeeds."""
    _running(ctx)
    steps = int(os.environ.get("GPURELAY_TEST_STEPS", SHORT_STEPS))
    for step in range(1, steps + 1):
        ctx.log(f"step {step}")
        time.sleep(STEP_S)
    return {"steps": steps}


def held(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Logs a step every ``STEP_S`` until ``{marks}/go`` exists (and at least ``HELD_MIN_STEPS``)."""
    _running(ctx)
    marks = _marks()
    go = marks / "go" if marks is not None else None
    for step in range(1, HELD_MAX_STEPS + 1):
        ctx.log(f"step {step}")
        if marks is not None:
            (marks / f"{ctx.request.job_id}.step.tmp").write_text(str(step))
            (marks / f"{ctx.request.job_id}.step.tmp").replace(marks / f"{ctx.request.job_id}.step")
        if step >= HELD_MIN_STEPS and (go is None or go.exists()):
            ctx.progress(1.0, "done")
            return {"steps": step}
        time.sleep(STEP_S)
    raise PermanentError("never_released", f"no {go} within {HELD_MAX_STEPS} steps")
