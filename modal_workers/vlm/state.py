"""What a VLM session remembers between chunks: the conversation and the alert rule.

:class:`Conversation` keeps earlier chunks as context: each turn is the user text of a chunk
(its images are not kept) and the model's answer. Its turns are bounded by a token budget
(``context_tokens``, counted with the model's tokenizer): when a new turn would exceed it, the
oldest turns go first; a budget of 0 keeps no history. :meth:`Conversation.messages` builds the
chat messages of the next chunk: the system prompt, the kept turns, then the new user turn with
one image part per image. :meth:`Conversation.reset` forgets every turn.

:class:`AlertRule` searches each answer for a client's regular expression. Its cost is bounded
three ways: the pattern's length (``contracts.specs.session_params.ALERT_PATTERN_MAX``), the text searched
(the first :data:`ALERT_TEXT_MAX` characters) and a time limit per search (the ``regex`` package's
``timeout``, a dependency of transformers; a search that runs out counts in
:attr:`AlertRule.timeouts` and matches nothing). A pattern the ``regex`` package cannot compile is
``PermanentError("alert_pattern_invalid")``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modal_workers.runtime.worker_runtime import PermanentError

ALERT_TEXT_MAX = 8_000
"""Characters of an answer an alert pattern is searched in."""
ALERT_TIMEOUT_S = 0.05
"""Longest one alert search may run."""
ALERT_MATCH_MAX = 200
"""Characters of the matched text kept in an alert record."""


@dataclass(frozen=True)
class Turn:
    """One earlier chunk: its user text, the answer and their token count."""

    user: str
    answer: str
    tokens: int


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


class Conversation:
    """The running conversation of a session, bounded by a token budget (see the module docstring)."""

    def __init__(self, count_tokens: Callable[[str], int], context_tokens: int, system_prompt: str | None = None):
        self.count_tokens = count_tokens
        self.context_tokens = context_tokens
        self.system_prompt = system_prompt
        self.turns: deque[Turn] = deque()
        self.tokens = 0
        self.turns_dropped = 0

    def messages(self, user_text: str, images: int) -> list[dict[str, Any]]:
        """The chat messages for the next chunk: system prompt, kept turns, the new turn with ``images`` images."""
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": [_text(self.system_prompt)]})
        for turn in self.turns:
            messages.append({"role": "user", "content": [_text(turn.user)]})
            messages.append({"role": "assistant", "content": [_text(turn.answer)]})
        content = [{"type": "image"} for _ in range(images)] + [_text(user_text)]
        messages.append({"role": "user", "content": content})
        return messages

    def add(self, user_text: str, answer: str) -> None:
        """Remember a chunk's turn, then drop the oldest turns until the budget holds."""
        turn = Turn(user_text, answer, self.count_tokens(user_text) + self.count_tokens(answer))
        self.turns.append(turn)
        self.tokens += turn.tokens
        while self.turns and self.tokens > self.context_tokens:
            self.tokens -= self.turns.popleft().tokens
            self.turns_dropped += 1

    def reset(self) -> None:
        """Forget every turn."""
        self.turns.clear()
        self.tokens = 0


class AlertRule:
    """A client's alert: ``pattern`` searched in each answer, ``message`` reported when it matches."""

    def __init__(self, pattern: str, message: str | None = None, timeout_s: float = ALERT_TIMEOUT_S) -> None:
        import regex

        self.pattern = pattern
        self.message = message or f"the answer matched {pattern!r}"
        self.timeout_s = timeout_s
        self.timeouts = 0
        try:
            self._compiled = regex.compile(pattern)
        except regex.error as exc:  # contracts check with ``re``; the two differ at the edges
            raise PermanentError("alert_pattern_invalid", f"the alert pattern {pattern!r} is invalid: {exc}") from None

    def search(self, text: str) -> str | None:
        """The matched text (cut to :data:`ALERT_MATCH_MAX` characters), or ``None``."""
        try:
            found = self._compiled.search(text[:ALERT_TEXT_MAX], timeout=self.timeout_s)
        except TimeoutError:
            self.timeouts += 1
            return None
        return None if found is None else str(found.group(0))[:ALERT_MATCH_MAX]
