"""A lean HTTP/1.1 POST client for webhook attempts: asyncio streams, keep-alive, SSRF-pinned.

httpx dominated the delivery profile (~60 % of the notifier's CPU at full load); a webhook attempt
needs one POST and a status, so this client does just that. A URL is checked with
:func:`services.common.ssrf.check_url` (resolve, refuse non-public addresses unless allowlisted; a
passed check is reused for ``CHECK_TTL_S``, like a DNS cache, a refusal never) and each attempt uses
a connection to one of the addresses checked: an idle keep-alive connection whose peer is among
them, or a new one opened to them (never to a name, so no DNS rebinding). TLS uses
the host name for SNI and certificate checks. Redirects are never followed; at most
``max_body`` bytes of a response body are read (a longer body closes the connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx

from services.common.ssrf import ResolvedTarget, check_url

MAX_HEADER_LINES = 100
MAX_LINE = 16 * 1024
MAX_IDLE_PER_ORIGIN = 4
CHECK_TTL_S = 5.0  # how long a passed SSRF check of a URL is reused (like a DNS cache; refusals are not kept)
MAX_CHECKED = 4096


class ProtocolError(Exception):
    """The peer did not speak HTTP/1.1 as expected."""


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    address: str
    used: bool = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass(frozen=True, slots=True)
class Response:
    """A status and the headers (names lower-cased) of a response."""

    status: int
    headers: Mapping[str, str]


@dataclass
class Http1Client:
    """POSTs over pooled keep-alive connections to checked addresses only."""

    allow_hosts: tuple[str, ...] = ()
    allow_http: bool = False
    max_body: int = 64 * 1024
    ssl_context: ssl.SSLContext = field(default_factory=ssl.create_default_context)
    _idle: dict[tuple[str, str, int], list[_Conn]] = field(default_factory=dict)
    _checked: dict[str, tuple[float, ResolvedTarget, str]] = field(default_factory=dict)

    async def aclose(self) -> None:
        """Close every idle connection."""
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``body``; raises :class:`~services.common.ssrf.SsrfError`, ``OSError``, ``ProtocolError``."""
        target, start_line = await self._check(url)
        head = self._head(start_line, body, headers)
        key = (target.scheme, target.host, target.port)
        conn = self._take_idle(key, target.addresses)
        if conn is not None:
            try:
                return await self._exchange(key, conn, head, body)
            except (OSError, ProtocolError, asyncio.IncompleteReadError):
                pass  # a stale keep-alive connection (closed by _exchange): try once more on a fresh one
        return await self._exchange(key, await self._connect(target), head, body)

    async def _check(self, url: str) -> tuple[ResolvedTarget, str]:
        """The URL's checked target and request start (``POST path`` and ``host``), reused for a few seconds."""
        now = time.monotonic()
        cached = self._checked.get(url)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        target = await check_url(url, self.allow_hosts, allow_http=self.allow_http)
        path = httpx.URL(url).raw_path.decode("ascii") or "/"  # path and query, percent-encoded
        default_port = 443 if target.scheme == "https" else 80
        host = target.host if ":" not in target.host else f"[{target.host}]"
        if target.port != default_port:
            host = f"{host}:{target.port}"
        start_line = f"POST {path} HTTP/1.1\r\nhost: {host}"
        if len(self._checked) >= MAX_CHECKED:
            self._checked.clear()
        self._checked[url] = (now + CHECK_TTL_S, target, start_line)
        return target, start_line

    def _take_idle(self, key: tuple[str, str, int], addresses: Iterable[str]) -> _Conn | None:
        conns = self._idle.get(key)
        allowed = set(addresses)
        while conns:
            conn = conns.pop()
            if conn.address in allowed and not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn
            conn.close()
        return None

    async def _connect(self, target: ResolvedTarget) -> _Conn:
        error: OSError = OSError(f"{target.host}: no address to connect to")
        for address in target.addresses:
            try:
                if target.scheme == "https":
                    reader, writer = await asyncio.open_connection(
                        address, target.port, ssl=self.ssl_context, server_hostname=target.host
                    )
                else:
                    reader, writer = await asyncio.open_connection(address, target.port)
            except OSError as exc:
                error = exc
                continue
            return _Conn(reader, writer, address)
        raise error

    @staticmethod
    def _head(start_line: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [start_line, f"content-length: {len(body)}"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ProtocolError("a header contains a line break")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _exchange(self, key: tuple[str, str, int], conn: _Conn, head: bytes, body: bytes) -> Response:
        """One request and response on ``conn``; the connection is pooled again or closed, even on errors."""
        try:
            return await self._roundtrip(key, conn, head, body)
        except BaseException:  # a timeout (cancellation) or a broken peer: the connection is not reusable
            conn.close()
            raise

    async def _roundtrip(self, key: tuple[str, str, int], conn: _Conn, head: bytes, body: bytes) -> Response:
        conn.writer.write(head + body)
        await conn.writer.drain()
        status_line = await conn.reader.readline()
        if not status_line:
            raise ProtocolError("the connection closed before a response")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:100]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = await conn.reader.readline()
            if line in (b"\r\n", b"\n"):
                break
            if not line or len(line) > MAX_LINE:
                raise ProtocolError("bad response headers")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            raise ProtocolError("too many response headers")
        reusable = await self._drain(conn, status, headers, parts[0])
        if reusable:
            conns = self._idle.setdefault(key, [])
            if len(conns) < MAX_IDLE_PER_ORIGIN:
                conns.append(conn)
                return Response(status, headers)
        conn.close()
        return Response(status, headers)

    async def _drain(self, conn: _Conn, status: int, headers: Mapping[str, str], version: bytes) -> bool:
        """Read (and drop) the body; whether the connection may be reused."""
        keep = headers.get("connection", "").lower() != "close" and version == b"HTTP/1.1"
        if status in (204, 304) or 100 <= status < 200:
            return keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            read = 0
            while True:
                size_line = await conn.reader.readline()
                try:
                    size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
                except ValueError:
                    raise ProtocolError("bad chunk size") from None
                if size == 0:
                    while (await conn.reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    return keep
                read += size
                if read > self.max_body:
                    return False
                await conn.reader.readexactly(size + 2)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ProtocolError("bad content-length")
            size = int(length)
            if size > self.max_body:
                return False
            await conn.reader.readexactly(size)
            return keep
        await conn.reader.read(self.max_body)  # the body runs to the end of the connection
        return False
