"""Frames → chunks for the VLM workload: closing by count or time, sampling, coalescing when behind.

Pure Python (no torch, no I/O); the session glue feeds it and asks it for work::

    chunker = Chunker(chunk_frames=8, chunk_seconds=2.0, max_images=4)
    chunker.add(Frame(seq, ts, jpeg))        # as each frame arrives (acked at once elsewhere)
    while (chunk := chunker.take()) is not None:
        ...                                  # run the model on chunk.frames (at most max_images)
    chunker.seconds_to_deadline()            # how long the glue may wait before calling take() again
    chunker.flush()                          # at the end: close the open window, then take() it

A window opens at its first frame and closes at ``chunk_frames`` frames or ``chunk_seconds``
after it opened (by the injectable ``clock``, the server's, never the client's ``ts``), whichever
comes first. A closed window waits in a single *ready* slot until :meth:`Chunker.take`. If the
worker falls behind (a window closes while the ready slot is still full), the two coalesce into
one pending chunk that keeps only the newest ``max_pending_frames`` frames (default twice
``chunk_frames``, never fewer than it); the older ones are counted in
:attr:`Chunker.frames_dropped`. So at most ``chunk_frames + max_pending_frames`` frames are ever
held, whatever the input rate. :func:`sample_evenly` then picks the frames shown
to the model from a taken chunk; ``first_seq``/``last_seq`` still span every frame it covers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Frame:
    """One streamed frame: the client's sequence number and timestamp, and the encoded image."""

    seq: int
    ts: float
    data: bytes


@dataclass(frozen=True)
class Chunk:
    """A closed window ready for the model.

    ``frames``: the sampled frames (at most ``max_images``, in order); ``covered``: how many frames
    the chunk spans (sampled or not); ``coalesced``: whether a backlog was merged into it.
    """

    index: int
    frames: tuple[Frame, ...]
    first_seq: int
    last_seq: int
    covered: int
    closed_at: float
    coalesced: bool = False


def sample_evenly(items: Sequence[T], count: int) -> list[T]:
    """At most ``count`` of ``items``, evenly spaced, the first and the last kept (the last alone if ``count`` is 1)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    n = len(items)
    if n <= count:
        return list(items)
    if count == 1:
        return [items[-1]]
    return [items[round(i * (n - 1) / (count - 1))] for i in range(count)]


@dataclass
class _Window:
    frames: list[Frame] = field(default_factory=list)
    opened_at: float = 0.0


class Chunker:
    """Groups frames into chunks (see the module docstring).

    Thread-safe: frames may be added from one thread (the event loop) while another takes chunks.
    """

    def __init__(
        self,
        chunk_frames: int,
        chunk_seconds: float,
        max_images: int,
        max_pending_frames: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if chunk_frames < 1 or max_images < 1 or chunk_seconds <= 0:
            raise ValueError("chunk_frames and max_images must be ≥ 1 and chunk_seconds > 0")
        self.chunk_frames = chunk_frames
        self.chunk_seconds = chunk_seconds
        self.max_images = max_images
        self.max_pending_frames = max(max_pending_frames or 2 * chunk_frames, chunk_frames)
        self.clock = clock
        self.frames_received = 0
        self.frames_dropped = 0
        self.chunks_taken = 0
        self._window = _Window()
        self._ready: list[Frame] = []
        self._ready_coalesced = False
        self._ready_closed_at = 0.0
        self._lock = threading.Lock()

    @property
    def held_frames(self) -> int:
        """Frames held now (open window plus the ready slot): never more than ``chunk_frames + max_pending_frames``."""
        return len(self._window.frames) + len(self._ready)

    def add(self, frame: Frame) -> None:
        """Take one frame into the open window (closing the window if it is full or overdue)."""
        with self._lock:
            self._close_if_due()
            if not self._window.frames:
                self._window.opened_at = self.clock()
            self._window.frames.append(frame)
            self.frames_received += 1
            self._close_if_due()

    def take(self) -> Chunk | None:
        """The next chunk for the model, if a window has closed (checks the time first); else ``None``."""
        with self._lock:
            self._close_if_due()
            if not self._ready:
                return None
            frames, self._ready = self._ready, []
            closed_at, coalesced, self._ready_coalesced = self._ready_closed_at, self._ready_coalesced, False
            index, self.chunks_taken = self.chunks_taken, self.chunks_taken + 1
        return Chunk(
            index=index,
            frames=tuple(sample_evenly(frames, self.max_images)),
            first_seq=frames[0].seq,
            last_seq=frames[-1].seq,
            covered=len(frames),
            closed_at=closed_at,
            coalesced=coalesced,
        )

    def flush(self) -> None:
        """Close the open window now, whatever its size (the session is ending)."""
        with self._lock:
            if self._window.frames:
                self._close()

    def seconds_to_deadline(self) -> float | None:
        """Seconds until the open window closes by time (0 if overdue); ``None`` when no window is open."""
        with self._lock:
            return self._seconds_left()

    def _seconds_left(self) -> float | None:
        if not self._window.frames:
            return None
        return max(0.0, self._window.opened_at + self.chunk_seconds - self.clock())

    def _close_if_due(self) -> None:
        frames = self._window.frames
        if frames and (len(frames) >= self.chunk_frames or self._seconds_left() == 0.0):
            self._close()

    def _close(self) -> None:
        closed, self._window = self._window.frames, _Window()
        if self._ready:  # the worker is behind: merge the backlog, keep the newest frames
            merged = self._ready + closed
            keep = merged[-self.max_pending_frames :]
            self.frames_dropped += len(merged) - len(keep)
            self._ready, self._ready_coalesced = keep, True
        else:
            self._ready = closed
        self._ready_closed_at = self.clock()
