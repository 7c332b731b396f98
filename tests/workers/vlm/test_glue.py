"""The vlm workload (``modal_workers.vlm:run``) in the real runtime, its feed and events in memory.

What a client cannot see from outside: the prompt of chunk 3 holds chunk 1's answer and a reset
empties it; a model the deployment does not allow fails before anything loads, one that cannot
load fails with ``model_unavailable``; ``warm()`` loads the default once; the slow-model hook.
The whole stack (socket, SSE, webhooks, coalescing) is tests/e2e/test_vlm_sessions.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from contracts.envelope import EventEnvelope
from contracts.ids import new_id
from contracts.runs import Outcome, RunRequest
from contracts.session_feed import FeedBacklog, FeedControl, FeedFrame
from modal_workers.runtime.worker_runtime import WorkerRuntime, load_workload
from modal_workers.vlm import workload as vlm
from modal_workers.vlm.model import load_model
from modal_workers.vlm.runner import TEST_DELAY_MAX_S, slow_model_delay_s
from tests.support.lap import MemorySink, local_storage
from tests.support.sessions import jpeg

pytestmark = pytest.mark.timeout(120)
WAIT_S = 60.0


class FeedSink(MemorySink):
    """Events in memory (waitable); the session's feed is what the test puts into it."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()
        self.put: Callable[..., None] | None = None
        self.stream_seq = 0

    async def send(self, subject_event: str, event: EventEnvelope, *, dispatched_seq: int = 0) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    async def open_session_feed(self, request: Any, robot_id: str, on_item: Any, positions: Any) -> Any:
        with self.changed:
            self.put = on_item
            self.changed.notify_all()
        on_item(FeedBacklog(stream_seq=0), None)  # a new session: nothing was sent before the feed opened
        return self

    async def stop(self) -> None:
        """The feed's stop (nothing to release)."""

    def wait(self, done: Callable[[list[EventEnvelope]], bool]) -> list[EventEnvelope]:
        """Wait (bounded) until ``done(events)``; the events so far."""
        with self.changed:
            assert self.changed.wait_for(lambda: done(self.events), WAIT_S), [e.type for e in self.events]
            return list(self.events)

    def data(self, type_: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.type == type_]

    def frame(self, seq: int) -> None:
        self.stream_seq += 1
        assert self.put is not None
        self.put(FeedFrame(seq=seq, ts=1.0 + seq, content_type="image/jpeg", stream_seq=self.stream_seq), jpeg(seq))

    def control(self, action: str) -> None:
        self.stream_seq += 1
        assert self.put is not None
        self.put(FeedControl(action=action, stream_seq=self.stream_seq))


def vlm_request(params: dict[str, Any]) -> RunRequest:
    job_id = new_id("job")
    return RunRequest(
        tenant="acme", job_id=job_id, kind="vlm", attempt=1, spec={"kind": "vlm", "params": params},
        function="modal_workers.vlm:run", heartbeat_interval_s=5.0,
    )  # fmt: skip


@contextmanager
def session_run(tmp_path: Path, params: dict[str, Any]) -> Iterator[tuple[FeedSink, Future[Outcome]]]:
    """The vlm workload running a session in a thread of a real runtime; the sink and its outcome."""
    runtime = WorkerRuntime(FeedSink.create, lambda: local_storage(tmp_path), cancel_grace_s=0.1)
    sink = runtime.sink
    assert isinstance(sink, FeedSink)
    try:
        with ThreadPoolExecutor(1) as pool:
            outcome = pool.submit(runtime.run, load_workload("modal_workers.vlm:run"), vlm_request(params))
            try:
                yield sink, outcome
            finally:
                if sink.put is not None and not outcome.done():
                    sink.control("stop")  # a failed test's session ends too (the pool waits for it)
    finally:
        runtime.close()


@pytest.fixture
def tiny_default(tiny_gemma_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GPURELAY_VLM_MODEL", str(tiny_gemma_dir))
    monkeypatch.setenv("GPURELAY_VLM_MODELS", '["org/listed-but-not-cached"]')
    monkeypatch.delenv("GPURELAY_VLM_TEST_DELAY_S", raising=False)
    return tiny_gemma_dir


def ready(events: list[EventEnvelope]) -> bool:
    return any(e.type == "job.progress" and e.data.get("message") == "ready" for e in events)


def results(count: int) -> Callable[[list[EventEnvelope]], bool]:
    return lambda events: sum(e.type == "session.result" for e in events) >= count


def test_chunk_3s_prompt_holds_chunk_1s_answer_and_a_reset_empties_it(tmp_path: Path, tiny_default: Path) -> None:
    params = {"chunk_frames": 2, "chunk_seconds": 30, "max_new_tokens": 6, "prompt": "What now?"}
    model = load_model(str(tiny_default))
    with session_run(tmp_path, params) as (sink, outcome):
        sink.wait(ready)
        for chunk in range(3):  # one chunk at a time: none coalesces with the next
            sink.frame(2 * chunk + 1)
            sink.frame(2 * chunk + 2)
            sink.wait(results(chunk + 1))
        prompt = model.last_prompt  # chunk 3's: nothing else ran since
        first, second, third = sink.data("session.result")
        assert (first["first_seq"], first["last_seq"], third["first_seq"], third["last_seq"]) == (1, 2, 5, 6)
        assert f"[chunk 0, frames 1-2] What now?<end_of_turn>\n<start_of_turn>model\n{first['text']}" in prompt
        assert second["text"] in prompt
        assert [r["data"]["context_turns"] for r in (first, second, third)] == [0, 1, 2]
        sink.control("reset")
        sink.frame(7)
        sink.frame(8)
        sink.wait(results(4))
        after = sink.data("session.result")[3]
        assert after["data"]["context_turns"] == 0
        assert first["text"] not in model.last_prompt
        assert "[chunk 0," not in model.last_prompt
        sink.control("stop")
        done = outcome.result(WAIT_S)
    assert done.status == "succeeded", done.error
    assert done.result["stopped"] == "requested"
    assert (done.result["results"], done.result["frames_received"], done.result["frames_dropped"]) == (4, 8, 0)
    assert [r["chunk"] for r in sink.data("session.result")] == [1, 2, 3, 4]
    assert sink.types()[-1] == "job.succeeded"


@pytest.mark.parametrize(
    ("model", "code"), [("org/not-listed", "model_not_allowed"), ("org/listed-but-not-cached", "model_unavailable")]
)
def test_a_model_not_allowed_or_not_loadable_fails_the_session(
    tmp_path: Path, tiny_default: Path, model: str, code: str
) -> None:
    with session_run(tmp_path, {"model": model}) as (sink, outcome):
        done = outcome.result(WAIT_S)
    assert (done.status, done.error and done.error.code) == ("permanent", code)
    assert str(tiny_default) not in (done.error.message if done.error else "")
    assert sink.types()[-1] == "job.failed"
    assert "ready" not in [e.data.get("message") for e in sink.events if e.type == "job.progress"]


def test_warm_loads_the_default_once_and_tolerates_a_model_that_cannot_load(
    tiny_default: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vlm.warm()
    loaded = load_model(str(tiny_default))
    vlm.warm()
    assert load_model(str(tiny_default)) is loaded
    monkeypatch.setenv("GPURELAY_VLM_MODEL", "org/not-cached-anywhere")
    vlm.warm()  # logged, left to the run


def test_the_slow_model_hook_is_read_bounded_and_refuses_nonsense() -> None:
    assert slow_model_delay_s({}) == 0.0
    assert slow_model_delay_s({"GPURELAY_VLM_TEST_DELAY_S": "1.5"}) == 1.5
    assert slow_model_delay_s({"GPURELAY_VLM_TEST_DELAY_S": "1e9"}) == TEST_DELAY_MAX_S
    with pytest.raises(ValueError, match="GPURELAY_VLM_TEST_DELAY_S"):
        slow_model_delay_s({"GPURELAY_VLM_TEST_DELAY_S": "slow"})
