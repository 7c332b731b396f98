"""A server's ports: one picked free, and whose server greets on a port.

A port picked free is bound by the server only later, so another process (another test's server, on
a busy machine) may take it in between: :func:`server_name_at` tells whose server answers there, and
:class:`PortTakenError` is the start that found another one there
(:class:`~services.common.nats.server.embedded.EmbeddedNats` and
:class:`~services.common.nats.server.cluster.NatsCluster` then pick new ports).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Collection

from services.common.nats.server.binary import NatsServerError

INFO_MAX_BYTES = 64 * 1024
"""A greeting longer than this is not one (a server's INFO is a few hundred bytes)."""


class PortTakenError(NatsServerError):
    """Another process holds the server's port (another nats-server greets clients there)."""


def free_port(host: str = "127.0.0.1", besides: Collection[int] = ()) -> int:
    """A TCP port that was free a moment ago, none of ``besides`` (ports picked for the same server: the
    kernel may hand a port just let go of out again, and a server given one port twice cannot start)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in besides:
            return port


def server_name_at(host: str, port: int, timeout_s: float = 0.2) -> str:
    """The ``server_name`` in the INFO a server on ``host:port`` greets with; :class:`OSError` when
    nothing answers there in time, or something that is not a NATS server does. A port picked free
    can be taken by another server before ours binds it, so
    :meth:`~services.common.nats.server.embedded.EmbeddedNats.wait_ready` waits for the greeting
    carrying the name it gave its server, not for any greeting."""
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
