"""Serve an ASGI app over real HTTP on loopback, in a background thread, for a test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from services.common.config import WS_MAX_MESSAGE_BYTES
from services.common.http_server import server_config, tcp_listener


@contextmanager
def serve(
    app: Any, sock: socket.socket, start_timeout_s: float = 20.0, ws_max_size: int = WS_MAX_MESSAGE_BYTES
) -> Iterator[None]:
    """Run ``app`` with uvicorn, configured as the services run it, on the bound ``sock`` in a thread."""
    server = uvicorn.Server(server_config(app, ws_max_size))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start within {start_timeout_s} s")
            time.sleep(0.005)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def bound_socket() -> socket.socket:
    """A TCP socket bound to a free loopback port (no race between picking and binding)."""
    return tcp_listener("127.0.0.1", 0)
