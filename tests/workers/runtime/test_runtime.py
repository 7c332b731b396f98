"""The worker runtime: event order, throttling, heartbeats, yielded reports, errors, inputs, cancel."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import uvloop

from contracts.envelope import EventEnvelope
from contracts.event_ids import is_worker_event_id, worker_event_id
from contracts.runs import PROGRESS_MIN_INTERVAL_S, StagePlan
from contracts.specs.job_inputs import InputRef
from modal_workers.lap_compare import workload as lap_compare
from modal_workers.runtime.inputs import InputError, download_input
from modal_workers.runtime.worker_runtime import (
    ArtifactOut,
    Log,
    PermanentError,
    Progress,
    Result,
    WorkerContext,
    WorkerRuntime,
)
from tests.support.lap import (
    MemorySink,
    closing,
    lap_request,
    local_storage,
    memory_runtime,
    scrolling_video,
    texture,
    upload,
    write_video,
)

pytestmark = pytest.mark.timeout(60)


def chatty(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """1000 progress reports over about a second, the last one below 100 %."""
    for i in range(1000):
        ctx.progress(i / 1000, f"step {i}")
        time.sleep(0.001)
    return {"n": 1000}


def test_progress_is_throttled_to_four_a_second_and_the_last_report_is_sent(tmp_path: Path) -> None:
    runtime, sink = memory_runtime(tmp_path)
    with closing(runtime):
        started = time.monotonic()
        outcome = runtime.run(chatty, lap_request({"video": "upl_x"}))
        elapsed = time.monotonic() - started
    assert outcome.status == "succeeded"
    assert outcome.result == {"n": 1000}
    progress = [e for e in sink.events if e.type == "job.progress"]
    assert 3 <= len(progress) <= elapsed / PROGRESS_MIN_INTERVAL_S + 2  # the first, one per interval, the last
    assert progress[0].data["message"] == "step 0"
    assert progress[-1].data["message"] == "step 999"
    fractions = [e.data["fraction"] for e in progress]
    assert fractions == sorted(fractions)
    assert sink.types()[0] == "job.started"
    assert sink.types()[-1] == "job.succeeded"


class WaitableSink(MemorySink):
    """A memory sink a workload can wait on."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    async def send(self, subject_event: str, event: EventEnvelope, *, dispatched_seq: int = 0) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def messages(self) -> list[str | None]:
        return [e.data.get("message") for e in self.events if e.type == "job.progress"]


def test_a_throttled_report_goes_out_soon_even_if_nothing_follows(tmp_path: Path) -> None:
    runtime = WorkerRuntime(WaitableSink.create, lambda: local_storage(tmp_path))
    sink = runtime.sink
    assert isinstance(sink, WaitableSink)

    def report_then_idle(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
        ctx.progress(0.1, "first")
        ctx.progress(0.2, "second")  # throttled: the first went a moment ago
        with sink.changed:  # a live session idles here: its latest report must not wait for the end
            seen = sink.changed.wait_for(lambda: "second" in sink.messages(), 5.0)
        return {"seen_while_running": seen}

    with closing(runtime):
        outcome = runtime.run(report_then_idle, lap_request({"video": "upl_x"}))
    assert outcome.result == {"seen_while_running": True}
    assert sink.messages() == ["first", "second"]


def test_a_throttled_report_never_follows_the_terminal_event(tmp_path: Path) -> None:
    def report_then_fail(spec: Any, ctx: WorkerContext) -> None:
        ctx.progress(0.1, "first")
        ctx.progress(0.2, "second")
        raise PermanentError("bad_input", "no")

    runtime, sink = memory_runtime(tmp_path)
    with closing(runtime):
        outcome = runtime.run(report_then_fail, lap_request({"video": "upl_x"}))
    assert outcome.status == "permanent"
    assert sink.types()[-1] == "job.failed"


def test_heartbeats_appear_while_a_slow_workload_runs(tmp_path: Path) -> None:
    runtime, sink = memory_runtime(tmp_path)
    with closing(runtime):
        outcome = runtime.run(
            lambda spec, ctx: time.sleep(0.6), lap_request({"video": "upl_x"}, heartbeat_interval_s=0.1)
        )
    assert outcome.status == "succeeded"
    beats = sink.types().count("job.heartbeat")
    assert beats >= 3
    assert sink.types().index("job.heartbeat") > sink.types().index("job.started")


async def _heartbeat_timers() -> list[str]:
    """The runtime's heartbeat timers still running on its loop."""
    timers = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "WorkerRuntime._heartbeats"]
    return [t.get_name() for t in timers if not t.done()]


def test_heartbeats_stop_with_the_run(tmp_path: Path) -> None:
    runtime, sink = memory_runtime(tmp_path)
    with closing(runtime):
        runtime.run(lambda spec, ctx: time.sleep(0.35), lap_request({"video": "upl_x"}, heartbeat_interval_s=0.1))
        assert sink.types().count("job.heartbeat") >= 1, "it beat during the run"
        # the timer's cancel reached the loop before this call did: a timer left behind still runs
        assert runtime.call(_heartbeat_timers()) == []
    assert sink.types()[-1] == "job.succeeded"


def test_a_work_dir_is_made_on_first_use_and_removed_after_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)  # TMPDIR is read again
    used: list[Path] = []

    def writes(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
        (ctx.work_dir / "out.txt").write_text("x")
        used.append(ctx.work_dir)
        return {"same": ctx.work_dir == used[0]}

    runtime, _ = memory_runtime(tmp_path)
    with closing(runtime):
        assert runtime.run(lambda spec, ctx: {}, lap_request({"video": "upl_x"})).status == "succeeded"
        assert list((tmp_path / "tmp").iterdir()) == [], "a run that needs no folder makes none"
        assert runtime.run(writes, lap_request({"video": "upl_x"})).result == {"same": True}
    assert used[0].parent == tmp_path / "tmp"
    assert not used[0].exists(), "removed after the run"


def yielding(spec: Any, ctx: WorkerContext) -> Iterator[Any]:
    """Reports by yielding."""
    yield Progress(0.5, "half")
    yield Log("hello", "warning")
    yield ArtifactOut("notes.txt", b"some notes")
    yield Result({"ok": True})


def test_a_generator_workload_reports_by_yielding(tmp_path: Path) -> None:
    runtime, sink = memory_runtime(tmp_path)
    with closing(runtime):
        outcome = runtime.run(yielding, lap_request({"video": "upl_x"}))
    assert outcome.status == "succeeded"
    assert outcome.result == {"ok": True}
    assert sink.types() == ["job.started", "job.progress", "job.log", "job.artifact", "job.succeeded"]
    artifact = sink.events[3].data
    assert (artifact["name"], artifact["content_type"], artifact["size"]) == ("notes.txt", "text/plain", 10)
    assert sink.events[-1].data["artifacts"][0]["sha256"] == artifact["sha256"]


def test_every_event_id_is_in_the_attempts_worker_namespace(tmp_path: Path) -> None:
    def long_names(spec: Any, ctx: WorkerContext) -> Iterator[Any]:
        yield from yielding(spec, ctx)
        yield ArtifactOut("a-rather-long-artifact-name-" + "x" * 200 + ".json", b"{}")

    runtime, sink = memory_runtime(tmp_path)
    first, stage = lap_request({"video": "upl_x"}, attempt=7), StagePlan(name="train", index=1, count=3)
    staged = lap_request({"video": "upl_x"}, attempt=2, stage=stage)
    with closing(runtime):
        assert runtime.run(long_names, first).status == "succeeded"
        assert runtime.run(lambda spec, ctx: None, staged).status == "succeeded"
        assert runtime.run(lambda spec, ctx: None, first).status == "succeeded"  # a resend of the same attempt
    ids = [e.id for e in sink.events]
    for event in sink.events:
        request = first if event.attempt == 7 else staged
        assert is_worker_event_id(event.id, request.job_id, request.attempt), event.id
    assert ids.count(worker_event_id(first.job_id, 7, "started")) == 2  # stored once: same id
    assert ids.count(worker_event_id(first.job_id, 7, "succeeded")) == 2
    assert worker_event_id(staged.job_id, 2, "s1-started") in ids
    assert len(set(ids)) == len(ids) - 2


def test_errors_are_classified(tmp_path: Path) -> None:
    def permanent(spec: Any, ctx: WorkerContext) -> None:
        raise PermanentError("bad_thing", "fix the thing")

    def flaky(spec: Any, ctx: WorkerContext) -> None:
        raise ConnectionError("the network blinked")

    runtime, sink = memory_runtime(tmp_path)
    with closing(runtime):
        failed = runtime.run(permanent, lap_request({"video": "upl_x"}))
        retried = runtime.run(flaky, lap_request({"video": "upl_x"}))
        missing = runtime.run(lap_compare.run, lap_request({"video": "upl_gone"}))
    assert failed.status == "permanent"
    assert failed.error is not None
    assert failed.error.code == "bad_thing"
    assert retried.status == "retryable"
    assert retried.error is not None
    assert retried.error.retryable
    assert "the network blinked" in retried.error.message
    assert missing.status == "permanent"
    assert missing.error is not None
    assert missing.error.code == "input_not_found"
    assert sink.types().count("job.failed") == 2  # a retryable error is the dispatcher's to conclude


@pytest.mark.parametrize("number", [float("nan"), float("inf")])
def test_a_result_with_a_non_finite_number_fails_as_invalid_result(tmp_path: Path, number: float) -> None:
    def diverged(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
        return {"laps": [{"loss": number}]}

    runtime, sink = memory_runtime(tmp_path)
    with closing(runtime):
        outcome = runtime.run(diverged, lap_request({"video": "upl_x"}))
    assert outcome.status == "permanent"
    assert outcome.error is not None
    assert outcome.error.code == "invalid_result"
    assert "laps[0].loss" in outcome.error.message
    assert sink.types()[-1] == "job.failed"


def test_a_cancelled_run_stops_at_its_next_check(tmp_path: Path) -> None:
    def loop(spec: Any, ctx: WorkerContext) -> None:
        ctx.cancel()  # what the cancel watch does when job.cancel_requested arrives
        for _ in range(3000):  # 30 s unless a check stops it
            ctx.check_cancelled()
            time.sleep(0.01)

    runtime, sink = memory_runtime(tmp_path, cancel_grace_s=0.05)
    with closing(runtime):
        started = time.monotonic()
        outcome = runtime.run(loop, lap_request({"video": "upl_x"}))
    assert time.monotonic() - started < 10
    assert outcome.status == "retryable"
    assert outcome.error is not None
    assert outcome.error.code == "canceled"
    assert "job.failed" not in sink.types()
    assert "job.succeeded" not in sink.types()


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    good = scrolling_video(tmp / "good.mp4", [4.0 * k for k in range(48)])
    avi = write_video(
        tmp / "good.avi", iter([np.roll(texture(120, 160), k * 3, axis=1) for k in range(48)]), 24.0, "MJPG"
    )
    (tmp / "text.mp4").write_text("this is not a video\n" * 50)
    (tmp / "empty.mp4").write_bytes(b"")
    cv2.VideoWriter(str(tmp / "zero.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 24.0, (160, 120)).release()
    (tmp / "cut.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp / "cut.avi").write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
    return {
        "invalid_video": (tmp / "text.mp4", {}),
        "empty_video": (tmp / "empty.mp4", {}),
        "empty_video-zero-frames": (tmp / "zero.mp4", {}),
        "truncated_video": (tmp / "cut.mp4", {}),
        "truncated_video-avi": (tmp / "cut.avi", {}),
        "video_too_long": (good, {"max_duration_s": 1.0}),
    }


def test_every_bad_input_fails_with_its_code_within_a_bounded_time(tmp_path: Path) -> None:
    runtime, sink = memory_runtime(tmp_path / "blobs")
    with closing(runtime):
        for case, (path, params) in _bad_inputs(tmp_path).items():
            started = time.monotonic()
            outcome = runtime.run(lap_compare.run, lap_request({"video": upload(runtime, path)}, params))
            assert time.monotonic() - started < 10, case
            assert outcome.status == "permanent", (case, outcome)
            assert outcome.error is not None, case
            assert outcome.error.code == case.split("-")[0], (case, outcome.error)
            assert len(outcome.error.message) > 20
    failed = [e.data["error"]["code"] for e in sink.events if e.type == "job.failed"]
    assert len(failed) == 6


async def test_a_url_input_is_downloaded_with_a_size_cap(tmp_path: Path) -> None:
    body = b"\x00\x00\x00\x18ftypmp42" + b"x" * 5000

    def client() -> httpx.AsyncClient:
        handler = lambda request: httpx.Response(200 if request.url.path == "/lap.mp4" else 404, content=body)  # noqa: E731
        return httpx.AsyncClient(transport=httpx.MockTransport(handler))

    ref = InputRef(url="https://videos.example/lap.mp4")
    path = await download_input(None, "", "acme", ref, tmp_path, "video", url_client=client)
    assert path.read_bytes() == body
    assert path.name == "video-lap.mp4"
    with pytest.raises(InputError) as too_large:
        await download_input(None, "", "acme", ref, tmp_path, "video", max_bytes=1000, url_client=client)
    assert too_large.value.code == "input_too_large"
    gone = InputRef(url="https://videos.example/gone.mp4")
    with pytest.raises(InputError) as missing:
        await download_input(None, "", "acme", gone, tmp_path, "video", url_client=client)
    assert missing.value.code == "input_unavailable"


def test_the_runtimes_event_thread_runs_uvloop(tmp_path: Path) -> None:
    runtime, sink = memory_runtime(tmp_path)
    with closing(runtime):
        outcome = runtime.run(chatty_once, lap_request({"video": "upl_x"}))
        assert isinstance(runtime.loop, uvloop.Loop)
    assert outcome.status == "succeeded"
    assert sink.types() == ["job.started", "job.progress", "job.succeeded"]


def chatty_once(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """One progress report."""
    ctx.progress(0.5, "half")
    return {}
