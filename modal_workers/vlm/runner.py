"""The VLM workload's model thread: it loads the model, then runs a session's chunks one at a time.

The workload's own thread keeps polling the session and handing frames to the
:class:`~modal_workers.vlm.session.VlmSession` (acks never wait on the model: they are the
gateway's), while :class:`ChunkRunner` takes each closed chunk, runs the model on it and hands the
outcome to a callback. It closes windows by time too: when no chunk is ready it sleeps until the
open window's deadline (or a wake-up), so a chunk closes on time even without new frames.

:class:`ModelSlot` is the session's model before and after it is loaded: the runner loads it first
(:meth:`ChunkRunner.start`), so frames that arrive meanwhile already go to the chunker (a chunk
that closes during the load waits, coalescing as when the model is slow). It also carries the
slow-model test hook: ``GPURELAY_VLM_TEST_DELAY_S`` (:func:`slow_model_delay_s`) adds that many seconds
to every generation, so a test can make the model fall behind; it is for tests only, is reported in
the session's metrics when set, and is capped at :data:`TEST_DELAY_MAX_S`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modal_workers.vlm.chunker import Chunk
from modal_workers.vlm.session import ChatModel, ChunkOutcome, VlmSession

TEST_DELAY_ENV = "GPURELAY_VLM_TEST_DELAY_S"
TEST_DELAY_MAX_S = 30.0
IDLE_WAIT_S = 0.5
"""Longest sleep of an idle runner between two looks at the session (a wake-up comes sooner)."""
CLOSE_WAIT_S = 1.0
"""How long :meth:`ChunkRunner.close` waits for the thread (a generation under way is not interrupted)."""


def slow_model_delay_s(environ: Mapping[str, str] = os.environ) -> float:
    """The slow-model test hook's delay in seconds (0 when unset; at most :data:`TEST_DELAY_MAX_S`)."""
    raw = environ.get(TEST_DELAY_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{TEST_DELAY_ENV} must be a number of seconds, not {raw!r}") from None
    return min(max(value, 0.0), TEST_DELAY_MAX_S)


class ModelSlot:
    """The session's model once :meth:`fill` put it there; ``delay_s`` is added to each generation."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.model: ChatModel | None = None

    def fill(self, model: ChatModel) -> None:
        """Put the loaded model in the slot."""
        self.model = model

    def _loaded(self) -> ChatModel:
        if self.model is None:
            raise RuntimeError("the model is not loaded yet")
        return self.model

    def generate(
        self, images: Sequence[Any], messages: Sequence[Any], max_new_tokens: int, temperature: float
    ) -> tuple[str, int]:
        """The loaded model's answer (after the test delay, if one is set)."""
        model = self._loaded()
        if self.delay_s:
            time.sleep(self.delay_s)
        return model.generate(images, messages, max_new_tokens, temperature)

    def count_tokens(self, text: str) -> int:
        """The loaded model's token count of ``text``."""
        return self._loaded().count_tokens(text)


class ChunkRunner:
    """One thread: ``load()`` into ``slot``, then each closed chunk through the model, then ``on_outcome``."""

    def __init__(
        self,
        session: VlmSession,
        slot: ModelSlot,
        load: Callable[[], ChatModel],
        on_outcome: Callable[[Chunk, ChunkOutcome], None],
        on_loaded: Callable[[], None] = lambda: None,
    ) -> None:
        self.session, self.slot, self.load = session, slot, load
        self.on_outcome, self.on_loaded = on_outcome, on_loaded
        self.error: BaseException | None = None
        self.busy_s = 0.0
        """Seconds spent running chunks (model time, decoding and reporting included)."""
        self._wake, self._draining, self._closing = threading.Event(), threading.Event(), threading.Event()
        self.loaded = threading.Event()
        self._thread = threading.Thread(target=self._main, name="vlm-model", daemon=True)

    def start(self) -> None:
        """Start the thread (it loads the model first)."""
        self._thread.start()

    def wake(self) -> None:
        """Frames arrived: look for a closed chunk now."""
        self._wake.set()

    def wait_loaded(self, check: Callable[[], None], poll_s: float = 0.25) -> None:
        """Wait until the model is loaded; ``check`` is called while waiting (the job's cancel) and a load
        failure re-raised."""
        while not self.loaded.wait(poll_s):
            check()
            self.raise_error()
            if not self._thread.is_alive():
                raise RuntimeError("the model thread ended before the model was loaded")

    def raise_error(self) -> None:
        """Re-raise, in the caller's thread, what ended the runner (a load or model failure)."""
        if self.error is not None:
            raise self.error

    def drain(self, check: Callable[[], None], poll_s: float = 0.25) -> None:
        """Run what is left (call the session's ``finish()`` first), then end; ``check`` is called while
        waiting (the job's cancel) and the runner's error re-raised."""
        self._draining.set()
        self._wake.set()
        while self._thread.is_alive():
            check()
            self._thread.join(poll_s)
        self.raise_error()

    def close(self) -> None:
        """End the thread (briefly waited for: a generation under way finishes on its own)."""
        self._closing.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(CLOSE_WAIT_S)

    def _main(self) -> None:
        try:
            self.slot.fill(self.load())
            self.on_loaded()
            self.loaded.set()
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - handed to the workload's thread
            self.error = exc

    def _loop(self) -> None:
        while not self._closing.is_set():
            self._wake.clear()
            chunk = self.session.next_chunk()
            if chunk is not None:
                started = time.monotonic()
                outcome = self.session.run(chunk)
                if outcome is not None:
                    self.on_outcome(chunk, outcome)
                self.busy_s += time.monotonic() - started
                continue
            if self._draining.is_set():
                return
            left = self.session.seconds_to_deadline()
            self._wake.wait(IDLE_WAIT_S if left is None else min(left, IDLE_WAIT_S))
