"""The session socket's protocol (``WS /v1/sessions/{id}/stream``), free of I/O, for both clients.

The server answers each frame with one ``ack`` (or one ``error``) and each stop or reset with one
``control`` (or ``error``), in order; ``event`` messages interleave. :class:`SessionProtocol` pairs
replies with what was sent and keeps the events for ``events()``, and remembers the latest
``session.ready`` (the worker is live) and every ``session.resumed`` (a lost worker's session went on).
Frames are JPEG or PNG bytes; a numpy image is encoded to JPEG with OpenCV when it is installed (neither
is a dependency). Each frame carries an idempotency key (``key`` in its description), so a frame whose
socket dropped before its ack is sent again on a new socket and stored once (:func:`reopens`).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from gpurelay_client._core import backoff_s
from gpurelay_client._errors import GpurelayError, SessionClosed, SessionError
from gpurelay_client._events import Event, parse_event
from gpurelay_client._models import SessionReadyPayload, SessionResultPayload, SessionResumedPayload

Frame = bytes | bytearray | memoryview | Any
"""JPEG or PNG bytes, or an image array (H x W x 3 BGR uint8, as OpenCV reads it)."""


FROM_THE_START = 1
"""``?after=`` of a new session's socket: its events from the first (only the JOBS stream's very first
message could be passed over), where no ``after`` gives only those published once the server has
subscribed, so a result answered before that would be missed."""


@dataclass(frozen=True)
class FrameAck:
    """The server stored frame ``seq`` (numbered from 1 per session), captured at ``ts`` (Unix seconds)."""

    seq: int
    ts: float


def encode_frame(frame: Frame, quality: int = 90) -> bytes:
    """``frame`` as bytes: image bytes as they are, an array as JPEG through OpenCV (if installed)."""
    if isinstance(frame, bytes | bytearray | memoryview):
        return bytes(frame)
    if not hasattr(frame, "__array_interface__"):
        raise TypeError(f"a frame is JPEG/PNG bytes or an image array, not {type(frame).__name__}")
    try:
        import cv2  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise GpurelayError("encoding an image array needs OpenCV (pip install opencv-python-headless)") from None
    ok, encoded = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise GpurelayError("OpenCV could not encode the frame as JPEG")
    return bytes(encoded.tobytes())


FINAL_CLOSES = frozenset({1000, 1008, 1009})
"""Close codes after which the socket is not opened again (nor is any 4xxx, a refusal): the server's
close after the terminal event, a credential not sent in time, a message over the cap."""


def reopens(code: int | None, drops: int, limit: int) -> bool:
    """Whether a socket closed with ``code`` (``None``: cut without a close) is opened again, after
    ``drops`` drops in a row of at most ``limit``."""
    return code not in FINAL_CLOSES and (code is None or code < 4000) and drops <= limit


def opens_later(exc: BaseException) -> bool:
    """Whether opening the socket failed for a moment (the gateway restarting: no connection, one closed
    in the handshake, a time-out, a 5xx answer), so it is tried again; not for a refusal (4xx)."""
    if isinstance(exc, InvalidStatus):
        return exc.response.status_code >= 500
    return isinstance(exc, OSError | TimeoutError | InvalidHandshake | ConnectionClosed)


@dataclass
class FrameRetries:
    """One frame's tries: after its socket dropped, the socket is opened again (``max_reconnects`` drops
    in a row at most; never after the session ended or a final close); after ``unavailable``, the frame
    is sent again after a pause (``max_retries``). Its idempotency key makes either safe."""

    max_reconnects: int
    max_retries: int
    drops: int = 0
    refusals: int = 0

    def reopen_after(self, exc: SessionClosed, ended: bool) -> int:
        """The drops so far, when the socket is to be opened again; ``exc`` raised when not."""
        self.drops += 1
        if ended or not reopens(exc.code, self.drops, self.max_reconnects):
            raise exc
        return self.drops

    def pause_after(self, exc: SessionError) -> float:
        """The pause before the frame is sent again; ``exc`` raised when it is not to be."""
        self.refusals += 1
        if exc.code != "unavailable" or self.refusals > self.max_retries:
            raise exc
        return backoff_s(self.refusals - 1)


def frame_key() -> str:
    """A new frame's idempotency key."""
    return f"gpurelay-py-{uuid.uuid4().hex}"


FRAME_KEY = re.compile(r"[ -~]{1,255}")
"""A frame's idempotency key as the gateway takes it: 1-255 printable ASCII characters."""


def frame_meta(ts: float | None, pose: Sequence[float] | None, key: str | None = None) -> str:
    """The ``{"type": "frame"}`` message sent before each frame: its idempotency key (``key``, else a fresh
    one), and its time and pose when known."""
    key = frame_key() if key is None else key
    if not FRAME_KEY.fullmatch(key):
        raise ValueError("idempotency_key must be 1-255 printable ASCII characters")
    message: dict[str, Any] = {"type": "frame", "key": key}
    if ts is not None:
        if not math.isfinite(ts) or ts < 0:
            raise ValueError("ts must be a finite Unix time in seconds")
        message["ts"] = float(ts)
    if pose is not None:
        values = [float(v) for v in pose]
        if len(values) != 16 or not all(math.isfinite(v) for v in values):
            raise ValueError("pose must be 16 finite numbers: a 4x4 camera-to-world matrix, row-major")
        message["pose"] = values
    return json.dumps(message)


class SessionProtocol:
    """Pairs the socket's replies with the requests sent, in order; keeps events until read."""

    def __init__(self, after: int | None = None) -> None:
        self.pending: deque[str] = deque()
        self.events: deque[Event] = deque()
        self.last_seq = after
        self.ended = False
        self.ready: SessionReadyPayload | None = None
        self.resumed: list[SessionResumedPayload] = []

    def expect(self, kind: str) -> None:
        """A message was sent that the server answers with ``kind`` (``ack`` or ``control``)."""
        self.pending.append(kind)

    def receive(self, text: str | bytes) -> dict[str, Any] | None:
        """One message from the server; the reply it is, when it answers the oldest request."""
        message = json.loads(text)
        kind = message.get("type")
        if kind == "event":
            event = parse_event(str(message["seq"]), None, message["event"])
            self.events.append(event)
            self.last_seq = int(message["seq"])
            self.ended = self.ended or event.terminal
            if isinstance(event.data, SessionReadyPayload):
                self.ready = event.data
            elif isinstance(event.data, SessionResumedPayload):
                self.resumed.append(event.data)
            return None
        if kind in ("ack", "control", "error") and self.pending:
            self.pending.popleft()
            return dict(message)
        if kind == "error":  # nothing was waiting for it: a problem the session reports
            raise SessionError(str(message.get("code")), str(message.get("message")))
        return None

    @staticmethod
    def ack(reply: dict[str, Any]) -> FrameAck:
        """A frame's reply as its :class:`FrameAck`, or the :class:`SessionError` it was."""
        if reply.get("type") != "ack":
            raise SessionError(str(reply.get("code")), str(reply.get("message")))
        return FrameAck(int(reply["seq"]), float(reply["ts"]))

    @staticmethod
    def stopped_by_close(action: str, code: int | None, protocol: SessionProtocol) -> bool:
        """Whether a socket that closed instead of answering a stop means the stop happened: the
        session ended (its terminal event came, or the server closed normally after it)."""
        return action == "stop" and (protocol.ended or code == 1000)

    @staticmethod
    def control(reply: dict[str, Any]) -> None:
        """A stop's or reset's reply; the :class:`SessionError` when it was refused."""
        if reply.get("type") != "control":
            raise SessionError(str(reply.get("code")), str(reply.get("message")))


class SessionLifecycle:
    """What the events read so far say of a session's worker (``Session`` and ``AsyncSession``)."""

    _protocol: SessionProtocol

    @property
    def ready(self) -> SessionReadyPayload | None:
        """The latest ``session.ready`` read: that attempt's worker is live (``None``: none read yet)."""
        return self._protocol.ready

    @property
    def resumed(self) -> list[SessionResumedPayload]:
        """Every ``session.resumed`` read: a new attempt went on after a lost worker (attempt, frames
        replayed and lost, the gap)."""
        return list(self._protocol.resumed)

    def take_events(self) -> list[Event]:
        """The events read so far and not yet yielded, taken now without waiting for more: events that
        arrived while a frame's ack or a stop's answer was read, for a live display between frames
        (:meth:`events` goes on after them)."""
        taken = list(self._protocol.events)
        self._protocol.events.clear()
        return taken


def result_of(event: Event) -> SessionResultPayload | None:
    """The ``session.result`` an event carries, if it is one."""
    if event.type == "session.result" and isinstance(event.data, SessionResultPayload):
        return event.data
    return None
