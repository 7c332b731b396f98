"""Which nats-server answers on a port: the ``server_name`` of the ``INFO`` it greets a client with.

A free port is picked a moment before the server binds it, so another process (a server of a test
running beside this one) can take it in between; the greeting of *some* server on the port then
proves nothing. :class:`~services.common.nats.embedded.EmbeddedNats` names each server it starts and
waits for the greeting that carries that name.
"""

from __future__ import annotations

import json
import socket

INFO_MAX_BYTES = 64 * 1024
"""A greeting longer than this is not one (a server's INFO is a few hundred bytes)."""


def server_name_at(host: str, port: int, timeout_s: float = 0.2) -> str:
    """The ``server_name`` in the INFO of the server on ``host:port``; :class:`OSError` when nothing
    answers there in time, or something that is not a NATS server does."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        data = b""
        while b"\r\n" not in data and len(data) < INFO_MAX_BYTES:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    line, _, _ = data.partition(b"\r\n")
    if not line.startswith(b"INFO "):
        raise OSError(f"no NATS greeting on {host}:{port}")
    try:
        return str(json.loads(line[5:]).get("server_name", ""))
    except (ValueError, AttributeError) as exc:
        raise OSError(f"a malformed NATS greeting on {host}:{port}") from exc
