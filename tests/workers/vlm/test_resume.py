"""A vlm session's resume: the conversation snapshot puts its turns back into a new attempt's session (counted
with its tokenizer, within ``context_tokens``), whose next prompt carries them; the counters go on."""

from __future__ import annotations

from typing import Any

from contracts.job_parts import Artifact
from contracts.specs.session_params import VlmParams
from modal_workers.runtime.session_resume import ResumePoint
from modal_workers.vlm.resume import conversation_json, restore, resume_state
from modal_workers.vlm.session import VlmSession


class Words:
    """A model that answers with the number of messages it was given; one token per word."""

    def __init__(self) -> None:
        self.prompts: list[list[Any]] = []

    def generate(self, images: Any, messages: Any, max_new_tokens: int, temperature: float) -> tuple[str, int]:
        self.prompts.append(list(messages))
        return f"saw {len(messages)} messages", 3

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def point_of(session: VlmSession, tokens: int) -> tuple[ResumePoint, bytes]:
    data = conversation_json(session)
    artifact = Artifact(name="live/1-conversation.json", key="k", size=len(data))
    return ResumePoint(number=3, snapshot=artifact, seq=6, frames_after=9, joints_after=0, results=3,
                       state=resume_state(session, tokens)), data  # fmt: skip


def test_the_restored_turns_are_in_the_next_prompt_and_the_counters_go_on() -> None:
    lost = VlmSession(VlmParams(chunk_frames=2, context_tokens=10_000), Words())
    for user, answer in (("[chunk 0, frames 1-2] Describe", "a cat"), ("[chunk 1, frames 3-4] Describe", "a dog")):
        lost.conversation.add(user, answer)
    lost.chunker.chunks_taken, lost.alerts, lost.frames_invalid = 2, 1, 3
    point, data = point_of(lost, tokens=17)
    model = Words()
    later = VlmSession(VlmParams(chunk_frames=2, context_tokens=10_000), model)
    assert restore(later, point, data) == 17
    assert later.remembered() == lost.remembered()
    assert (later.chunker.chunks_taken, later.alerts, later.frames_invalid) == (2, 1, 3)
    messages = later.conversation.messages("next", images=1)
    texts = [part["text"] for m in messages for part in m["content"] if part["type"] == "text"]
    assert texts == ["[chunk 0, frames 1-2] Describe", "a cat", "[chunk 1, frames 3-4] Describe", "a dog", "next"]


def test_restored_turns_stay_within_the_new_attempts_token_budget() -> None:
    lost = VlmSession(VlmParams(context_tokens=10_000), Words())
    for n in range(5):
        lost.conversation.add(f"user {n} words here", f"answer {n}")  # 6 tokens a turn
    point, data = point_of(lost, tokens=0)
    later = VlmSession(VlmParams(context_tokens=13), Words())
    restore(later, point, data)
    assert later.remembered() == [("user 3 words here", "answer 3"), ("user 4 words here", "answer 4")]
    assert later.conversation.turns_dropped == 3
