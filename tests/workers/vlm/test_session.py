"""A VLM session on the tiny Gemma 3: results, state across chunks, reset, the token budget, alerts, bad frames."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from contracts.specs.jobs import VlmParams
from modal_workers.runtime.worker_runtime import PermanentError
from modal_workers.vlm.chunker import Chunk
from modal_workers.vlm.model import VlmModel
from modal_workers.vlm.session import MAX_FRAME_PIXELS, ChunkOutcome, VlmSession, decode_frame
from modal_workers.vlm.state import AlertRule, Conversation

pytestmark = pytest.mark.timeout(120)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def jpeg(shade: int, size: tuple[int, int] = (48, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (shade, 255 - shade, 90)).save(out, format="JPEG")
    return out.getvalue()


def session(model: VlmModel, clock: Clock | None = None, **params: Any) -> VlmSession:
    defaults: dict[str, Any] = {"chunk_frames": 4, "max_images_per_chunk": 2, "max_new_tokens": 8}
    defaults["prompt"] = "What now?"
    return VlmSession(VlmParams(**(defaults | params)), model, clock=clock or Clock())


def run_chunks(s: VlmSession, count: int, start: int = 0) -> list[ChunkOutcome]:
    """Feed ``count`` full chunks of frames, running each as it closes."""
    outcomes = []
    per_chunk = s.params.chunk_frames
    for seq in range(start, start + count * per_chunk):
        s.add_frame(seq, seq / 30, jpeg(seq * 7 % 256))
        while (chunk := s.next_chunk()) is not None:
            outcome = s.run(chunk)
            assert outcome is not None
            outcomes.append(outcome)
    return outcomes


def turn(prompt_label: str, answer: str) -> str:
    """How the tiny model's chat template writes an earlier chunk and its answer."""
    return f"{prompt_label} What now?<end_of_turn>\n<start_of_turn>model\n{answer}<end_of_turn>"


def test_results_have_the_documented_shape(tiny_vlm: VlmModel) -> None:
    clock = Clock()
    s = session(tiny_vlm, clock)
    for seq in range(4):
        s.add_frame(seq, seq / 30, jpeg(seq * 40))
    chunk = s.next_chunk()
    assert chunk is not None
    clock.now += 0.25  # time between the chunk's close and its result
    outcome = s.run(chunk)
    assert outcome is not None
    assert set(outcome.result) == {"chunk", "first_seq", "last_seq", "text", "tokens", "latency_ms"}
    assert outcome.result["chunk"] == 0
    assert (outcome.result["first_seq"], outcome.result["last_seq"]) == (0, 3)
    assert isinstance(outcome.result["text"], str)
    assert outcome.result["tokens"] == 8
    assert outcome.result["latency_ms"] == pytest.approx(250.0)
    assert outcome.alert is None
    assert tiny_vlm.last_prompt.count("<start_of_image>") == 2  # max_images_per_chunk


def test_state_is_carried_across_chunks_and_cleared_by_reset(tiny_vlm: VlmModel) -> None:
    s = session(tiny_vlm, system_prompt="You watch a robot.")
    first, second, third = run_chunks(s, 3)
    assert [o.context_turns for o in (first, second, third)] == [0, 1, 2]
    prompt = tiny_vlm.last_prompt  # chunk 2's prompt
    assert prompt.startswith("<bos><start_of_turn>system\nYou watch a robot.<end_of_turn>")
    assert turn("[chunk 0, frames 0-3]", first.result["text"]) in prompt
    assert turn("[chunk 1, frames 4-7]", second.result["text"]) in prompt
    assert prompt.index("[chunk 0,") < prompt.index("[chunk 1,") < prompt.index("[chunk 2,")
    s.reset()
    assert len(s.conversation.turns) == 0
    (after_reset,) = run_chunks(s, 1, start=12)
    assert after_reset.context_turns == 0
    prompt = tiny_vlm.last_prompt
    assert "[chunk 3, frames 12-15]" in prompt
    assert "[chunk 0," not in prompt
    assert "[chunk 2," not in prompt
    assert prompt.count("<start_of_turn>model") == 1  # the generation prompt only


def test_the_token_budget_drops_the_oldest_turns(tiny_vlm: VlmModel) -> None:
    s = session(tiny_vlm, context_tokens=80)
    outcomes = run_chunks(s, 5)
    kept = [t.user for t in s.conversation.turns]
    assert s.conversation.tokens <= 80
    assert sum(t.tokens for t in s.conversation.turns) == s.conversation.tokens
    assert 1 <= len(kept) < 5
    assert kept == [f"[chunk {i}, frames {4 * i}-{4 * i + 3}] What now?" for i in range(5 - len(kept), 5)]
    assert s.stats()["turns_dropped"] == 5 - len(kept)
    s.add_frame(100, 0.0, jpeg(1))
    s.finish()
    chunk = s.next_chunk()
    assert chunk is not None
    s.run(chunk)
    prompt = tiny_vlm.last_prompt
    assert turn("[chunk 4, frames 16-19]", outcomes[4].result["text"]) in prompt
    assert "[chunk 0," not in prompt


def test_a_zero_budget_keeps_no_history(tiny_vlm: VlmModel) -> None:
    s = session(tiny_vlm, context_tokens=0)
    run_chunks(s, 2)
    assert "[chunk 0," not in tiny_vlm.last_prompt
    assert list(s.conversation.turns) == []


def test_a_matching_answer_yields_an_alert(tiny_vlm: VlmModel) -> None:
    s = session(tiny_vlm, alert={"pattern": "[a-z]{3}", "message": "letters seen"})
    (outcome,) = run_chunks(s, 1)
    assert outcome.alert is not None
    assert outcome.alert == {
        "chunk": 0,
        "first_seq": 0,
        "last_seq": 3,
        "pattern": "[a-z]{3}",
        "message": "letters seen",
        "match": AlertRule("[a-z]{3}").search(outcome.result["text"]),
    }
    assert outcome.alert["match"] in outcome.result["text"]
    assert s.stats()["alerts"] == 1
    quiet = session(tiny_vlm, alert={"pattern": "[0-9]"})
    assert [o.alert for o in run_chunks(quiet, 2)] == [None, None]


def test_alert_rules_match_with_a_default_message_and_bounded_cost() -> None:
    rule = AlertRule(r"(?i)robot (fell|stopped)")
    assert rule.search("the ROBOT fell over") == "ROBOT fell"
    assert rule.message == "the answer matched '(?i)robot (fell|stopped)'"
    assert rule.search("all fine") is None
    assert AlertRule("x+").search("x" * 10_000) == "x" * 200  # the match kept in a record is cut
    assert AlertRule("y").search("x" * 9_000 + "y") is None  # only the first 8,000 characters are searched
    with pytest.raises(PermanentError) as caught:
        AlertRule("(unclosed")
    assert caught.value.code == "alert_pattern_invalid"
    catastrophic = AlertRule(r"(\w+\s?)+$", timeout_s=0.02)
    assert catastrophic.search("a" * 3000 + "!") is None
    assert catastrophic.timeouts == 1


def test_frames_that_are_not_images_are_skipped_and_counted(tiny_vlm: VlmModel) -> None:
    s = session(tiny_vlm, chunk_frames=2)
    s.add_frame(0, 0.0, b"not a jpeg")
    s.add_frame(1, 0.0, jpeg(3))
    chunk = s.next_chunk()
    assert chunk is not None
    outcome = s.run(chunk)
    assert outcome is not None
    assert tiny_vlm.last_prompt.count("<start_of_image>") == 1
    s.add_frame(2, 0.0, b"")
    s.add_frame(3, 0.0, jpeg(5)[:20])  # truncated
    chunk = s.next_chunk()
    assert chunk is not None
    assert s.run(chunk) is None  # nothing to show the model
    assert s.stats() == {
        "frames_received": 4,
        "frames_dropped": 0,
        "frames_invalid": 3,
        "chunks": 2,
        "alerts": 0,
        "turns_dropped": 0,
    }


def test_oversized_frames_are_not_decoded() -> None:
    out = io.BytesIO()
    Image.new("L", (4097, 4096)).save(out, format="PNG")
    assert MAX_FRAME_PIXELS < 4097 * 4096
    assert decode_frame(out.getvalue()) is None
    image = decode_frame(jpeg(9, (64, 40)))
    assert image is not None
    assert (image.mode, image.size) == ("RGB", (64, 40))


def test_the_conversation_builds_messages_in_order() -> None:
    conversation = Conversation(lambda text: len(text.split()), context_tokens=10, system_prompt="Be brief.")
    conversation.add("one two", "three")
    conversation.add("four", "five six seven")
    messages = conversation.messages("next", images=2)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"] == [{"type": "text", "text": "three"}]
    assert messages[-1]["content"] == [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "next"}]
    conversation.add("eight nine", "ten eleven")  # 3 + 4 + 4 > 10: the first turn goes
    assert [t.user for t in conversation.turns] == ["four", "eight nine"]
    assert (conversation.tokens, conversation.turns_dropped) == (8, 1)


def test_the_session_loop_runs_a_chunk_closed_by_time(tiny_vlm: VlmModel) -> None:
    clock = Clock()
    s = session(tiny_vlm, clock, chunk_frames=64, chunk_seconds=1.0)
    s.add_frame(0, 0.0, jpeg(1))
    assert s.seconds_to_deadline() == pytest.approx(1.0)
    assert s.next_chunk() is None
    clock.now += 1.0
    chunk = s.next_chunk()
    assert isinstance(chunk, Chunk)
    assert (chunk.first_seq, chunk.last_seq) == (0, 0)


class ResetDuringGenerate:
    """The tiny model, with a client's reset arriving while a chunk is being generated."""

    def __init__(self, model: VlmModel) -> None:
        self.model = model
        self.session: VlmSession | None = None

    def generate(self, images: Any, messages: Any, max_new_tokens: int, temperature: float) -> tuple[str, int]:
        assert self.session is not None
        self.session.reset()
        return self.model.generate(images, messages, max_new_tokens, temperature)

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)


def test_an_answer_in_flight_during_a_reset_is_not_remembered(tiny_vlm: VlmModel) -> None:
    model = ResetDuringGenerate(tiny_vlm)
    s = VlmSession(VlmParams(chunk_frames=2, max_new_tokens=4), model, clock=Clock())
    model.session = s
    (outcome,) = run_chunks(s, 1)
    assert outcome.result["tokens"] == 4  # the result is still reported
    assert list(s.conversation.turns) == []


def test_frames_are_decoded_without_the_global_image_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """ultralytics patches ``PIL.Image.open`` process-wide (on an unknown file it tries to install a plugin)."""

    def patched_open(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("PIL.Image.open was called")

    monkeypatch.setattr(Image, "open", patched_open)
    png = io.BytesIO()
    Image.new("RGB", (20, 10), (1, 2, 3)).save(png, format="PNG")
    decoded = [decode_frame(data) for data in (jpeg(7), png.getvalue(), b"not an image", jpeg(8)[:30], b"")]
    assert [None if image is None else image.size for image in decoded] == [(48, 32), (20, 10), None, None, None]
