"""A small HTTP/1.1 proxy on loopback in front of the gateway, that breaks things on purpose.

Each client connection carries one request at a time (keep-alive is turned off toward the gateway,
so each answer ends with the connection). For each request ``decide(method, path)`` picks an
action: forward it, answer ``503`` with ``Retry-After`` itself, forward it but drop the answer (the
gateway did the work; the client sees the connection close), or forward it and cut the TCP connection
in the middle of the ``n``-th Server-Sent Event. Every request's time and action is recorded.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

FORWARD, REFUSE_503, DROP_ANSWER = "forward", "503", "drop"
Action = str | tuple[str, int]
"""``"forward"``, ``"503"``, ``"drop"`` or ``("cut_after_events", n)``."""


@dataclass
class Seen:
    """One request through the proxy."""

    method: str
    path: str
    headers: dict[str, str]
    action: Action
    at: float
    wall: float


@dataclass
class Proxy:
    """The proxy: ``url`` to give the client; ``decide`` may be replaced by a test at any time."""

    upstream: tuple[str, int]
    decide: Callable[[str, str], Action] = lambda method, path: FORWARD
    retry_after_s: int = 1
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting (connections in flight end on their own)."""
        self._closing.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._server.close()
        self._thread.join(10)

    def requests(self, method: str, prefix: str) -> list[Seen]:
        """The requests seen so far with ``method`` and a path starting with ``prefix``."""
        with self.lock:
            return [s for s in self.seen if s.method == method and s.path.startswith(prefix)]

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(60)
            reader = client.makefile("rb")
            while True:
                head = _read_head(reader)
                if head is None:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = reader.read(int(headers.get("content-length", "0") or 0))
                action = self.decide(method, path)
                with self.lock:
                    self.seen.append(Seen(method, path, headers, action, time.monotonic(), time.time()))
                if action == REFUSE_503:
                    text = b'{"type":"about:blank","title":"Unavailable","status":503,"detail":"proxy says not now"}'
                    client.sendall(
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n"
                        + f"retry-after: {self.retry_after_s}\r\ncontent-length: {len(text)}\r\n\r\n".encode()
                        + text
                    )
                    continue
                self._forward(client, lines, headers, body, action)
                return

    def _forward(
        self, client: socket.socket, lines: list[str], headers: dict[str, str], body: bytes, action: Action
    ) -> None:
        kept = [ln for ln in lines[1:] if ln and not ln.lower().startswith("connection:")]
        request = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body
        with socket.create_connection(self.upstream, timeout=60) as upstream:
            upstream.sendall(request)
            ids, cut = 0, action[1] if isinstance(action, tuple) else None
            while chunk := upstream.recv(65536):
                if action == DROP_ANSWER:
                    continue  # read it all (the gateway finished), send nothing
                if cut is not None and ids + chunk.count(b"id:") >= cut:
                    at = _nth(chunk, b"id:", cut - ids) + 3  # inside the cut-th event: it arrives half
                    client.sendall(chunk[:at])
                    client.shutdown(socket.SHUT_RDWR)  # the TCP connection is cut mid-stream
                    return
                ids += chunk.count(b"id:")
                client.sendall(chunk)


def _read_head(reader: object) -> bytes | None:
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        line = reader.readline()  # type: ignore[attr-defined]
        if not line:
            return None
        data += line
    return data[:-4]


def _nth(data: bytes, needle: bytes, n: int) -> int:
    """The offset of the ``n``-th (from 1) ``needle`` in ``data``."""
    at = -1
    for _ in range(n):
        at = data.find(needle, at + 1)
    return at
