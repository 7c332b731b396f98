"""Run an ASGI app with uvicorn: every gpurelay server is configured by :func:`server_config`.

:func:`server_config` caps WebSocket messages (uvicorn's own default, 16 MiB, lets every socket
hold that much before the app sees a byte, authenticated or not) and turns off what we do not use.
:class:`EmbeddedHttpServer` runs an app inside an existing event loop with our own signal handling
(``gpurelay dev``); :func:`serve_forever` runs one in the foreground (``gpurelay gateway``...).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Generator
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from services.common.config import WS_MAX_MESSAGE_BYTES

GRACEFUL_SHUTDOWN_S = 5.0
"""On shutdown, connections still open after this are closed (long-lived sockets and SSE streams)."""
KEEP_ALIVE_S = 30.0
"""An idle keep-alive connection is closed after this. It must outlast the clients' own idle expiry
(httpx's, and so the Python client's, is 5 s): at uvicorn's 5 s both ends let go together, and a
client that reused the connection just as the server closed it got a ``ReadError`` on a ``POST``
(an e2e test, on a loaded machine). Browsers retry such a request; httpx does not."""


class PathSizedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol (it reads one message at a time) with a limit per path.

    The app lists ``(path regex, max bytes)`` pairs in ``app.state.ws_message_limits``; a socket whose
    path matches one gets that limit, every other socket the server's ``ws_max_size``. The limit is
    set at the handshake, before any message can arrive.

    A text message that is not UTF-8 closes its socket with 1007, as uvicorn does, but logged as the
    client's error it is (one line at INFO), not as the server's (uvicorn logs a traceback at ERROR).
    """

    def handle_connect(self, event: Any) -> None:
        state = getattr(self.config.app, "state", None)
        route = str(event.path).partition("?")[0]
        for pattern, limit in getattr(state, "ws_message_limits", ()):
            if re.fullmatch(pattern, route):
                self.conn.max_message_size = limit
                break
        super().handle_connect(event)

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                self.logger.info("closed a WebSocket whose text message was not UTF-8 (1007)")
                self.conn.send_close(1007, "Text messages must be UTF-8.")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()


def server_options(ws_max_size: int = WS_MAX_MESSAGE_BYTES, log_level: str = "warning") -> dict[str, Any]:
    """uvicorn's options for every server: lifespan on, no access log, WebSocket messages capped, idle
    keep-alive connections kept :data:`KEEP_ALIVE_S`.

    A frame over ``ws_max_size`` bytes (or its path's limit, see :class:`PathSizedWebSocketProtocol`)
    is refused from its header, the socket closed with 1009, before its payload is read.
    """
    return {
        "lifespan": "on",
        "access_log": False,
        "log_level": log_level,
        "ws_max_size": ws_max_size,
        "ws": PathSizedWebSocketProtocol,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "timeout_keep_alive": KEEP_ALIVE_S,
    }


def server_config(app: Any, ws_max_size: int = WS_MAX_MESSAGE_BYTES, log_level: str = "warning") -> uvicorn.Config:
    """A uvicorn config for ``app`` with :func:`server_options` (sockets are passed to ``serve``)."""
    return uvicorn.Config(app, **server_options(ws_max_size, log_level))


def serve_forever(app: Any, host: str, port: int, ws_max_size: int = WS_MAX_MESSAGE_BYTES) -> None:
    """Serve ``app`` on ``host:port`` in the foreground until SIGINT or SIGTERM."""
    uvicorn.run(app, host=host, port=port, **server_options(ws_max_size))


def tcp_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``, its connections free of Nagle's delay.

    asyncio turns Nagle's algorithm off only on sockets whose ``proto`` is ``IPPROTO_TCP``; a socket made
    with proto 0 (``socket.socket(AF_INET, SOCK_STREAM)``) passes that on to every connection it accepts,
    and uvicorn writes a response's head and body apart, so each keep-alive answer after a connection's
    first waited for the client's delayed ACK: 40 ms on Linux. Linux passes ``TCP_NODELAY`` on as well.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class EmbeddedHttpServer:
    """An ASGI app on ``host:port``, started and stopped in-loop.

    The socket is bound at construction (port 0 picks a free one), so :attr:`url` is known
    before the app is built: an app that signs URLs pointing at itself needs it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        ws_max_size: int = WS_MAX_MESSAGE_BYTES,
    ) -> None:
        self.host = host
        self.log_level = log_level
        self.ws_max_size = ws_max_size
        self._sock = tcp_listener(host, port)
        self.port: int = int(self._sock.getsockname()[1])
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    async def start(self, app: Any, timeout_s: float = 30.0) -> None:
        """Serve ``app`` in a task; return once its lifespan has started and it accepts requests."""
        config = server_config(app, self.ws_max_size, self.log_level)
        self._server = server = _QuietServer(config)
        self._task = asyncio.create_task(server.serve(sockets=[self._sock]))
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("http server stopped during start-up")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"http server on {self.url} did not start in {timeout_s}s")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Ask uvicorn to exit (finishing in-flight requests) and wait for it."""
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
            self._task = None
        self._sock.close()
