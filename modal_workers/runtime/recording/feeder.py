"""A sourced session's feeder: publishes its source's frames and joint samples as a client would.

:class:`Feeder` runs on a thread of the session's own worker, beside the workload. For each
:class:`~modal_workers.runtime.recording.source.SourceFrame` it publishes the joint sample (once per
sample time), a reset when one comes before the frame, then the frame as seq ``n`` (from 1), through
a :class:`SourcePublisher` (NATS straight from a local pool worker, the gateway's internal routes from
a Modal one), so the frames reach the workload the way live ones do, and its recording, a resumed
worker and every consumer see them. After the last frame it asks the session to stop.

Pace: ``speed`` times the recorded timing (frame ``n`` is due ``(ts_n - ts_first) / speed`` after the
first), or ``"max"``: as fast as the workload takes the frames, never ``frame_buffer`` frames ahead of
what it took (so none is dropped). A worker that took the session over skips the frames already
published (the session's frame counter). A failure ends the session through
:meth:`~modal_workers.runtime.live_session.LiveSession.fail`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from contracts.session_feed import Pose
from modal_workers.runtime.errors import PermanentError
from modal_workers.runtime.recording.source import SourceFrame
from modal_workers.runtime.session_input import SessionInput

log = logging.getLogger(__name__)
WAIT_STEP_S = 0.01
"""How often a feeder that is ahead looks at what the workload took."""
STOP_JOIN_S = 30.0


class SourcePublisher(Protocol):
    """Where a feeder publishes (:class:`~services.common.session_publish.NatsSourcePublisher`, or the gateway)."""

    async def published(self) -> int:
        """The last frame seq published for the session."""

    async def frame(self, seq: int, ts: float, content_type: str, data: bytes, pose: Pose | None = None) -> None:
        """Publish frame ``seq``."""

    async def joints(self, ts: float, angles: list[float]) -> None:
        """Publish a joint sample of the session's robot."""

    async def control(self, action: Literal["stop", "reset"], reason: str, nonce: int) -> None:
        """Publish a reset or the stop."""


class Feeder:
    """Publishes ``frames`` on a thread (see the module docstring)."""

    def __init__(
        self,
        frames: Iterator[SourceFrame],
        publisher: SourcePublisher,
        call: Callable[[Awaitable[Any]], Any],
        taken: SessionInput,
        *,
        speed: float | Literal["max"],
        ahead: int,
        on_error: Callable[[Exception], None],
    ) -> None:
        self.frames, self.publisher, self.call, self.taken = frames, publisher, call, taken
        self.speed, self.ahead, self.on_error = speed, ahead, on_error
        self.published = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="session-feeder", daemon=True)

    def start(self) -> None:
        """Start publishing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop publishing (the session ended) and wait for the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(STOP_JOIN_S)

    def _run(self) -> None:
        try:
            self._feed()
        except ValidationError as exc:
            self.on_error(PermanentError("invalid_source", f"a source frame or joint sample is not valid: {exc}"))
        except Exception as exc:  # the session ends with whatever stopped its input
            log.warning("session feeder failed", exc_info=True)
            self.on_error(exc)

    def _feed(self) -> None:
        done = self.call(self.publisher.published())
        start: tuple[float, float] | None = None
        last_joints: float | None = None
        for seq, frame in enumerate(self.frames, start=1):
            if self._stopping.is_set():
                return
            if seq <= done:
                continue
            start = start or (time.monotonic(), frame.ts)
            if not self._wait(seq, frame, start):
                return
            if frame.reset and seq > 1:
                self.call(self.publisher.control("reset", "the source's next episode", seq))
            if frame.joints is not None and frame.joints_ts != last_joints:
                last_joints = frame.joints_ts
                self.call(self.publisher.joints(frame.ts if frame.joints_ts is None else frame.joints_ts, frame.joints))
            self.call(self.publisher.frame(seq, frame.ts, frame.content_type, frame.data, frame.pose))
            self.published = seq
        if not self._stopping.is_set():
            self.call(self.publisher.control("stop", "the source ended", self.published + 1))

    def _wait(self, seq: int, frame: SourceFrame, start: tuple[float, float]) -> bool:
        """Until frame ``seq`` is due; ``False`` when the feeder is stopped meanwhile."""
        if self.speed == "max":
            while seq - 1 - self._taken() >= self.ahead:
                if self._stopping.wait(WAIT_STEP_S):
                    return False
            return True
        due = start[0] + max(0.0, frame.ts - start[1]) / self.speed
        return not self._stopping.wait(max(0.0, due - time.monotonic()))

    def _taken(self) -> int:
        """Frames the workload took or the input dropped."""
        stats = self.taken.stats()
        return stats["frames_processed"] + stats["frames_dropped"]
