"""Following an event stream to its end over Server-Sent Events, resuming where it broke (no I/O here).

:class:`SseParser` is the WHATWG line protocol. :class:`EventFollower` is the resume logic both
clients drive: the next request carries ``Last-Event-ID`` (the last id seen), a cut connection or a
stream that ends before the terminal event is asked for again after the server's ``retry:`` hint
(else a backoff), an answer of "not now" (429, 502, 503, 504) after its ``Retry-After``; other
errors raise at once, and ``max_reconnects`` failures in a row without an event raise
:class:`~gpurelay_client.StreamError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from gpurelay_client._core import MAX_RETRY_AFTER_S, RETRIED_STATUSES, Reply, Request, backoff_s
from gpurelay_client._errors import StreamError, api_error, retry_after_seconds
from gpurelay_client._events import Event, parse_event

MAX_RETRY_HINT_S = 30.0
"""A server's ``retry:`` hint is followed up to this long."""


@dataclass
class SseParser:
    """Fields until a blank line make an event; ``:`` starts a comment (the server's keep-alive)."""

    data: list[str] = field(default_factory=list)
    event: str = ""
    id: str | None = None
    retry_ms: int | None = None

    def feed(self, line: str) -> tuple[str | None, str, str] | None:
        """One line (without its end); ``(id, event, data)`` when it completes an event."""
        line = line.rstrip("\r")
        if not line:
            if not self.data:
                self.event = ""
                return None
            out = (self.id, self.event or "message", "\n".join(self.data))
            self.data, self.event = [], ""
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.event = value
        elif name == "id" and "\0" not in value:
            self.id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None


class EventFollower:
    """The state of following one stream: what to ask for next, and what to do when it breaks."""

    def __init__(self, url: str, after: str | int | None, max_reconnects: int) -> None:
        self.url, self.max_reconnects = url, max_reconnects
        self.last_id = None if after is None else str(after)
        self.failures = 0
        self.done = False
        self.retry_ms: int | None = None
        self._parser = SseParser()

    def request(self) -> Request:
        """The next GET: ``Last-Event-ID`` once an event was seen (or ``after`` was given)."""
        self._parser = SseParser(id=self.last_id)
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        return Request("GET", self.url, headers=headers)

    def feed(self, line: str) -> Event | None:
        """One line of the answer; the event it completes, if any (the stream is done after a terminal one)."""
        parsed = self._parser.feed(line)
        self.retry_ms = self._parser.retry_ms if self._parser.retry_ms is not None else self.retry_ms
        if parsed is None:
            return None
        event_id, event_type, data = parsed
        self.last_id, self.failures = event_id, 0
        try:
            envelope = json.loads(data)
        except ValueError:
            return None
        if not isinstance(envelope, dict):
            return None
        event = parse_event(event_id, event_type if event_type != "message" else None, envelope)
        self.done = event.terminal
        return event

    def _pause(self, default_s: float | None = None) -> float:
        self.failures += 1
        if self.failures > self.max_reconnects:
            raise StreamError(f"{self.url}: lost {self.failures} times in a row before the job ended")
        if default_s is not None:
            return default_s
        if self.retry_ms is not None:
            return min(self.retry_ms / 1000, MAX_RETRY_HINT_S)
        return backoff_s(self.failures - 1)

    def broken(self) -> float:
        """The connection failed or was cut: seconds to wait before :meth:`request` again."""
        return self._pause()

    def ended(self) -> float:
        """The answer ended before the terminal event: seconds to wait before asking again."""
        return self._pause()

    def refused(self, reply: Reply) -> float:
        """An error answer: seconds to wait when it means "not now", else its :class:`APIError`."""
        after = retry_after_seconds(reply.headers)
        final = self.failures >= self.max_reconnects or (after is not None and after > MAX_RETRY_AFTER_S)
        if reply.status not in RETRIED_STATUSES or final:
            raise api_error(reply.status, reply.headers, reply.content, reply.reason)
        return self._pause(after)
