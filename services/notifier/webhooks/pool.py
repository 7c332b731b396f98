"""Idle keep-alive connections of the webhook HTTP/1.1 client: bounded per origin and in all, expiring.

At most ``per_origin`` idle connections per origin and ``total`` in all (the least recently used is
closed to make room), each closed once idle for ``idle_s`` (a timer, so sockets are released even when
no further attempt comes). Only a connection whose last exchange ended cleanly is put back; one with
unsolicited bytes waiting (a stray response) is closed when taken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

Origin = tuple[str, str, int]
"""(scheme, host, port)."""


@dataclass(eq=False, slots=True)
class Conn:
    """One connection to ``address`` (a checked IP) of an origin."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    address: str
    idle_since: float = 0.0

    def close(self) -> None:
        """Close the socket (idempotent)."""
        with contextlib.suppress(Exception):
            self.writer.close()

    def usable(self) -> bool:
        """Open, and nothing unread: the peer sent no bytes since the last response ended."""
        if self.reader.at_eof() or self.writer.is_closing():
            return False
        return not getattr(self.reader, "_buffer", b"")  # asyncio has no public look at buffered bytes


class IdlePool:
    """Idle connections by origin, least recently used first."""

    def __init__(self, *, idle_s: float, total: int, per_origin: int) -> None:
        self.idle_s, self.total, self.per_origin = idle_s, total, per_origin
        self._lru: OrderedDict[Conn, Origin] = OrderedDict()
        self._by_origin: dict[Origin, list[Conn]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._lru)

    def put(self, origin: Origin, conn: Conn) -> None:
        """Keep ``conn`` for reuse, or close it when its origin has enough idle ones."""
        conns = self._by_origin.setdefault(origin, [])
        if len(conns) >= self.per_origin or self.total <= 0:
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        conns.append(conn)
        self._lru[conn] = origin
        while len(self._lru) > self.total:
            self._drop(next(iter(self._lru)))
        if self._timer is None:
            self._timer = loop.call_later(self.idle_s, self._expire)

    def take(self, origin: Origin, addresses: Iterable[str]) -> Conn | None:
        """The most recently used idle connection of ``origin`` to one of ``addresses``, if any."""
        conns = self._by_origin.get(origin)
        allowed = set(addresses)
        now = asyncio.get_running_loop().time()
        while conns:
            conn = conns[-1]
            self._drop(conn, close=False)
            if conn.address in allowed and now - conn.idle_since < self.idle_s and conn.usable():
                return conn
            conn.close()
        return None

    def close_all(self) -> None:
        """Close every idle connection."""
        for conn in list(self._lru):
            self._drop(conn)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _drop(self, conn: Conn, *, close: bool = True) -> None:
        origin = self._lru.pop(conn)
        conns = self._by_origin[origin]
        conns.remove(conn)
        if not conns:
            del self._by_origin[origin]
        if close:
            conn.close()

    def _expire(self) -> None:
        """Close the connections idle for ``idle_s``; come back when the next one will be."""
        self._timer = None
        now = asyncio.get_running_loop().time()
        while self._lru:
            oldest = next(iter(self._lru))
            if now - oldest.idle_since < self.idle_s:
                self._timer = asyncio.get_running_loop().call_later(oldest.idle_since + self.idle_s - now, self._expire)
                return
            self._drop(oldest)
