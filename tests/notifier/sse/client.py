"""A small Server-Sent Events client for the notifier tests: parse frames, read with timeouts."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Frame:
    """One parsed SSE message (or a comment, with ``comment`` set)."""

    id: str | None = None
    event: str | None = None
    data: str = ""
    retry: int | None = None
    comment: str | None = None

    @property
    def envelope(self) -> dict[str, Any]:
        """The envelope in ``data``."""
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed


def parse_sse(lines: list[str]) -> list[Frame]:
    """Parse SSE text lines (without line ends) into frames and comments."""
    out: list[Frame] = []
    current = Frame()
    for line in lines:
        if line == "":
            if current.data or current.event or current.retry is not None:
                out.append(current)
            current = Frame()
        elif line.startswith(":"):
            out.append(Frame(comment=line[1:].strip()))
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                current.id = value
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data = f"{current.data}\n{value}" if current.data else value
            elif name == "retry":
                current.retry = int(value)
    return out


class SseReader:
    """Reads frames from an httpx streaming response, one at a time, with a timeout."""

    def __init__(self, lines: Any) -> None:
        self._lines = lines
        self.ended = False
        self._buffer: list[str] = []

    async def next(self, timeout_s: float = 10.0, comments: bool = False) -> Frame | None:
        """The next frame (``None`` when the stream ended); comments skipped unless asked for."""
        while True:
            try:
                line = await asyncio.wait_for(anext(self._lines), timeout_s)
            except StopAsyncIteration:
                self.ended = True
                return None
            self._buffer.append(line)
            if line == "" or line.startswith(":"):
                frames = parse_sse(self._buffer)
                self._buffer = []
                for frame in frames:
                    if comments or (frame.comment is None and (frame.data or frame.event)):
                        return frame

    async def take(self, n: int, timeout_s: float = 10.0) -> list[Frame]:
        """The next ``n`` data frames."""
        got: list[Frame] = []
        for _ in range(n):
            frame = await self.next(timeout_s)
            assert frame is not None, f"the stream ended after {len(got)} of {n} frames"
            got.append(frame)
        return got
