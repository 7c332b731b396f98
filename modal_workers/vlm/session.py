"""One streaming VLM session: frames in, chunk results and alerts out. No I/O, no session machinery.

The glue (the ``vlm`` workload) owns a :class:`VlmSession`; frames may be added from the event
loop's thread while chunks run in a worker thread (one chunk at a time)::

    session = VlmSession(params, load_model(resolve_model(params.model, *model_settings())))
    session.add_frame(seq, ts, jpeg)                 # each frame as it arrives
    while (chunk := session.next_chunk()) is not None:
        outcome = session.run(chunk)                 # None if no frame of the chunk could be decoded
        if outcome: emit(outcome.result); outcome.alert and emit(outcome.alert)
    session.seconds_to_deadline()                    # how long to wait for frames before asking again
    session.reset()                                  # forget the conversation (any thread, any time)
    session.finish()                                 # at the end: close the open window, then next_chunk()

Chunking is :class:`~modal_workers.vlm.chunker.Chunker`'s (count or time, sampling, coalescing
when behind); the conversation and alerts are :mod:`modal_workers.vlm.state`'s. Results are
``{chunk, first_seq, last_seq, text, tokens, latency_ms}`` where ``latency_ms`` runs from the
chunk's close to its answer (time waiting for the model included); alert records are
``{chunk, first_seq, last_seq, pattern, message, match}``. The model is anything with
``generate(images, messages, max_new_tokens, temperature) -> (text, tokens)`` and
``count_tokens(text)`` (:class:`~modal_workers.vlm.model.VlmModel`). Frames are decoded (PIL)
only when sampled; one that is not a JPEG or PNG image, or larger than :data:`MAX_FRAME_PIXELS`,
is skipped and counted in ``frames_invalid``.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from contracts.specs.session_params import VlmParams
from modal_workers.vlm.chunker import Chunk, Chunker, Frame
from modal_workers.vlm.state import AlertRule, Conversation

MAX_FRAME_PIXELS = 4096 * 4096
"""Largest frame decoded (width × height); a larger one is skipped."""


class ChatModel(Protocol):
    """What the session needs of a model (:class:`~modal_workers.vlm.model.VlmModel` is one)."""

    def generate(
        self, images: Sequence[Any], messages: Sequence[Any], max_new_tokens: int, temperature: float
    ) -> tuple[str, int]: ...

    def count_tokens(self, text: str) -> int: ...


@dataclass(frozen=True)
class ChunkOutcome:
    """What one chunk produced: its result record, the alert record if the alert matched, and how
    many earlier turns its prompt carried (the conversation's state at the time)."""

    result: dict[str, Any]
    alert: dict[str, Any] | None = None
    context_turns: int = 0


def decode_frame(data: bytes) -> Any | None:
    """``data`` (JPEG or PNG) as an RGB PIL image, or ``None`` if it is neither, is broken or is too large.

    The format's own decoder is called, not ``PIL.Image.open``: ultralytics patches that process-wide
    to install a plugin when a file is not recognised, and no other decoder is exposed to clients.
    """
    from PIL import JpegImagePlugin, PngImagePlugin

    decoders = {b"\xff\xd8\xff": JpegImagePlugin.JpegImageFile, b"\x89PNG\r\n\x1a\n": PngImagePlugin.PngImageFile}
    decoder = next((cls for magic, cls in decoders.items() if data.startswith(magic)), None)
    if decoder is None:
        return None
    try:
        with decoder(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_FRAME_PIXELS:
                return None
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError):  # a broken header raises SyntaxError, a truncated body OSError
        return None


def user_text(chunk: Chunk, prompt: str) -> str:
    """The user turn of ``chunk``: which frames it covers, then the prompt."""
    return f"[chunk {chunk.index}, frames {chunk.first_seq}-{chunk.last_seq}] {prompt}"


class VlmSession:
    """A session's chunker, conversation and alert rule around one model (see the module docstring)."""

    def __init__(self, params: VlmParams, model: ChatModel, clock: Callable[[], float] = time.monotonic) -> None:
        self.params = params
        self.model = model
        self.clock = clock
        self.chunker = Chunker(params.chunk_frames, params.chunk_seconds, params.max_images_per_chunk, clock=clock)
        self.conversation = Conversation(model.count_tokens, params.context_tokens, params.system_prompt)
        self.alert = AlertRule(params.alert.pattern, params.alert.message) if params.alert else None
        self.frames_invalid = 0
        self.alerts = 0
        self._epoch = 0  # bumped by reset(): an answer to a prompt from before a reset is not remembered
        self._lock = threading.Lock()

    def add_frame(self, seq: int, ts: float, data: bytes) -> None:
        """Take one frame (never blocks; memory stays bounded by the chunker)."""
        self.chunker.add(Frame(seq, ts, data))

    def next_chunk(self) -> Chunk | None:
        """The next closed chunk to run, if any."""
        return self.chunker.take()

    def seconds_to_deadline(self) -> float | None:
        """Seconds until the open window closes by time; ``None`` when none is open."""
        return self.chunker.seconds_to_deadline()

    def finish(self) -> None:
        """Close the open window (the session is ending); its chunk then comes from :meth:`next_chunk`."""
        self.chunker.flush()

    def reset(self) -> None:
        """Forget the conversation (a chunk running now is not remembered); frames received still make chunks."""
        with self._lock:
            self.conversation.reset()
            self._epoch += 1

    def remembered(self) -> list[tuple[str, str]]:
        """The conversation's kept turns now: (user text, answer), oldest first."""
        with self._lock:
            return [(turn.user, turn.answer) for turn in self.conversation.turns]

    def run(self, chunk: Chunk) -> ChunkOutcome | None:
        """Run the model on ``chunk`` and remember its turn; ``None`` if none of its frames decodes."""
        images = [image for frame in chunk.frames if (image := self._decode(frame)) is not None]
        if not images:
            return None
        text_in = user_text(chunk, self.params.prompt)
        with self._lock:
            messages, epoch = self.conversation.messages(text_in, len(images)), self._epoch
            turns = len(self.conversation.turns)
        answer, tokens = self.model.generate(images, messages, self.params.max_new_tokens, self.params.temperature)
        with self._lock:
            if epoch == self._epoch:
                self.conversation.add(text_in, answer)
        span = {"chunk": chunk.index, "first_seq": chunk.first_seq, "last_seq": chunk.last_seq}
        latency_ms = round((self.clock() - chunk.closed_at) * 1000, 3)
        result = {**span, "text": answer, "tokens": tokens, "latency_ms": latency_ms}
        return ChunkOutcome(result, self._alert(answer, span), turns)

    def stats(self) -> dict[str, int]:
        """Counters for the session's summary."""
        return {
            "frames_received": self.chunker.frames_received,
            "frames_dropped": self.chunker.frames_dropped,
            "frames_invalid": self.frames_invalid,
            "chunks": self.chunker.chunks_taken,
            "alerts": self.alerts,
            "turns_dropped": self.conversation.turns_dropped,
        }

    def _decode(self, frame: Frame) -> Any | None:
        image = decode_frame(frame.data)
        if image is None:
            self.frames_invalid += 1
        return image

    def _alert(self, answer: str, span: dict[str, int]) -> dict[str, Any] | None:
        if self.alert is None or (match := self.alert.search(answer)) is None:
            return None
        self.alerts += 1
        return {**span, "pattern": self.alert.pattern, "message": self.alert.message, "match": match}
