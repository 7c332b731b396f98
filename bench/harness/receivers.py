"""Webhook receivers on loopback: a scriptable Starlette app and a bare asyncio one for benchmarks.

Given an endpoint's secret (``secrets``, by URL path), a :class:`Receiver` verifies the Standard
Webhooks signature of each request on that path, as a real receiver must: a request that fails is
kept in ``invalid`` and answered 401.
Deliveries are at least once, so a receiver dedupes by ``webhook-id``: :meth:`Receiver.unique` and
:meth:`Receiver.duplicates` count by id.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Captured:
    """One request a receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id`` header."""
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """A webhook receiver: records every request; answers from ``decide`` (when it returns a status),
    else from ``script`` (then ``default``)."""

    default: int = 200
    decide: Callable[[Captured], int | None] | None = None
    script: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Captured] = field(default_factory=list)
    seen: dict[str, set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    secrets: dict[str, str] = field(default_factory=dict)
    """The ``whsec_`` secret of the endpoint at each path: a request on such a path is verified."""
    invalid: list[Captured] = field(default_factory=list)
    """Requests whose signature did not verify (answered 401, never counted as received)."""
    accepted: list[Captured] = field(default_factory=list)
    """Requests answered 2xx: deliveries the notifier takes as done."""
    answer_after: threading.Event | None = None
    """When set: each request is recorded as it comes and answered once this event is set (at most 30 s)."""

    def app(self) -> Starlette:
        """The Starlette app that answers on any path."""

        async def handle(request: Request) -> Response:
            status, headers = self.record(request.url.path, dict(request.headers), await request.body())
            if self.answer_after is not None:
                await asyncio.to_thread(self.answer_after.wait, 30.0)
            return Response(b"ok", status_code=status, headers=headers)

        return Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])])

    def record(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        """Keep one request; the status and headers to answer with."""
        captured = Captured(path, headers, body)
        if not self.verified(captured):
            with self.lock:
                self.invalid.append(captured)
            return 401, {}
        with self.lock:
            self.received.append(captured)
            self.seen.setdefault(path, set()).add(headers.get("webhook-id", ""))
            answer: int | tuple[int, dict[str, str]] | None = self.decide(captured) if self.decide else None
            if answer is None:
                answer = self.script.pop(0) if self.script else self.default
            status, answer_headers = answer if isinstance(answer, tuple) else (answer, {})
            if 200 <= status < 300:
                self.accepted.append(captured)
        return status, answer_headers

    def verified(self, captured: Captured) -> bool:
        """Whether ``captured`` carries a valid signature (always, on a path without a secret)."""
        secret = self.secrets.get(captured.path)
        if secret is None:
            return True
        try:
            Webhook(secret).verify(captured.body, captured.headers)
        except WebhookVerificationError:
            return False
        return True

    def duplicates(self, path: str) -> int:
        """Requests on ``path`` beyond the first of their webhook id (at-least-once redeliveries)."""
        with self.lock:
            return sum(1 for c in self.received if c.path == path) - len(self.seen.get(path, ()))

    def accepted_on(self, path: str) -> list[Captured]:
        """The requests on ``path`` answered 2xx (a refused one is attempted again)."""
        with self.lock:
            return [c for c in self.accepted if c.path == path]

    def on(self, path: str) -> list[Captured]:
        """The requests received on ``path``."""
        with self.lock:
            return [c for c in self.received if c.path == path]

    def unique(self, path: str) -> int:
        """How many distinct webhook ids ``path`` received (cheap)."""
        with self.lock:
            return len(self.seen.get(path, ()))

    def ids(self, path: str) -> list[str]:
        """The webhook ids received on ``path``, in arrival order (duplicates kept)."""
        return [c.webhook_id for c in self.on(path)]


class _FastHttp(asyncio.Protocol):
    """A minimal HTTP/1.1 server protocol for POSTs with Content-Length: cheap enough for load tests."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            size = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + size:
                return
            body, self.buffer = self.buffer[end + 4 : end + 4 + size], self.buffer[end + 4 + size :]
            status, _ = self.receiver.record(lines[0].split(" ")[1], headers, body)
            assert self.transport is not None
            self.transport.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())


async def serve_fast(receiver: Receiver, host: str = "127.0.0.1") -> tuple[asyncio.Server, str]:
    """Serve ``receiver`` with :class:`_FastHttp` in this event loop on ``host``; the server and its base URL."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _FastHttp(receiver), host, 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://{host}:{port}"
