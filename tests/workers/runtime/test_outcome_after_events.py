"""A run's outcome goes back only once every event it sent is stored.

A pipeline stage and a retryable run send no ending of their own, so their outcome is what tells the
dispatcher to go on (the next stage, ``job.retrying``). If it went back while an earlier event was still
on its way (a progress report retried after a reconnect), that event could be stored after what the
dispatcher does next: the next stage's first progress before this stage's last.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from contracts.envelope import EventEnvelope
from contracts.runs import StagePlan
from modal_workers.runtime.worker_runtime import WorkerContext, WorkerRuntime
from tests.support.lap import MemorySink, lap_request, local_storage

pytestmark = pytest.mark.timeout(60)


class SlowSink(MemorySink):
    """Stores each event a while after it is sent, as a sink retrying after a reconnect does."""

    async def send(self, subject_event: str, event: EventEnvelope, *, dispatched_seq: int = 0) -> None:
        await asyncio.sleep(0.2)
        await super().send(subject_event, event, dispatched_seq=dispatched_seq)


def reports(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Progress, a log line, an artifact and more progress, sent without waiting."""
    ctx.progress(0.1)
    ctx.log("working")
    ctx.artifact("out.txt", b"out")
    ctx.progress(0.2)
    return {"ok": True}


def fails(spec: Any, ctx: WorkerContext) -> None:
    """Progress, a log line and an artifact, then an error another attempt may not have."""
    ctx.progress(0.1)
    ctx.log("working")
    ctx.artifact("out.txt", b"out")
    raise RuntimeError("flaky")


@pytest.mark.parametrize(
    ("workload", "stage", "status", "fractions"),
    [
        (reports, StagePlan(name="first", index=0, count=2, offset=0.0, weight=0.5), "succeeded", [0.05, 0.1]),
        (fails, None, "retryable", [0.1]),
    ],
    ids=["stage", "retryable"],
)
def test_a_run_without_an_ending_comes_back_after_its_events_are_stored(
    tmp_path: Path, workload: Any, stage: StagePlan | None, status: str, fractions: list[float]
) -> None:
    runtime = WorkerRuntime(SlowSink.create, lambda: local_storage(tmp_path))
    sink = runtime.sink
    assert isinstance(sink, SlowSink)
    try:
        outcome = runtime.run(workload, lap_request({"video": "upl_x"}, stage=stage))
        stored = [(e.type, (e.data or {}).get("fraction")) for e in sink.events]
    finally:
        runtime.close()
    assert outcome.status == status
    assert [t for t, _ in stored if t != "job.progress"] == ["job.started", "job.log", "job.artifact"]
    assert [f for t, f in stored if t == "job.progress"] == fractions
