"""A TCP proxy on loopback in front of the gateway, for a session's socket or a page's streams: it passes
bytes both ways until a test says otherwise. ``mute()`` reads the server's bytes and drops them (an answer
lost on its way), ``mute_where(marker)`` only on the connections open now whose latest request names
``marker`` (a stream whose host went silent, where new connections still get through), ``cut()`` closes
every connection at once (a dropped socket), ``refuse(n)`` closes the next ``n`` connections as soon as
they are accepted (a gateway restarting)."""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit

CHUNK = 65536
METHODS = {b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS"}


class TcpProxy:
    """The proxy: ``url`` to give the client (HTTP and WebSocket alike)."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.accepted = self.refused = 0
        self._muted, self._to_refuse = False, 0
        self._open: set[socket.socket] = set()
        self._requests: dict[socket.socket, bytes] = {}
        """Each client connection's latest request line."""
        self._silenced: set[socket.socket] = set()
        self.history: list[bytes] = []
        """Every request line, in order."""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def mute(self, muted: bool = True) -> None:
        """Drop (``True``) or pass on (``False``) what the server sends from now."""
        self._muted = muted

    def mute_where(self, marker: bytes) -> int:
        """Drop what the server sends from now on the open connections whose latest request line holds
        ``marker``; how many there are."""
        with self._lock:
            self._silenced = {sock for sock, line in self._requests.items() if marker in line}
            return len(self._silenced)

    def opened_with(self, marker: bytes) -> int:
        """How many requests so far had ``marker`` in their request line."""
        with self._lock:
            return sum(marker in line for line in self.history)

    def refuse(self, count: int) -> None:
        """Close the next ``count`` connections at once."""
        with self._lock:
            self._to_refuse = count

    def cut(self) -> None:
        """Close every open connection, both sides."""
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        """Stop accepting and cut what is open."""
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(10)
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                refuse = self._to_refuse > 0
                self._to_refuse -= int(refuse)
                self.refused += int(refuse)
            if refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while chunk := source.recv(CHUNK):
                if not from_server and chunk[:8].split(b" ", 1)[0] in METHODS:
                    with self._lock:
                        self._requests[source] = chunk.split(b"\r\n", 1)[0]
                        self.history.append(self._requests[source])
                if not (from_server and (self._muted or sink in self._silenced)):
                    sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open -= {source, sink}
                for sock in (source, sink):
                    self._requests.pop(sock, None)
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
