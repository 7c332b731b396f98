"""A lean HTTP/1.1 POST client for webhook attempts: asyncio streams, keep-alive, SSRF-pinned.

A webhook attempt needs one POST and a status; a general client (httpx) costs most of the
notifier's CPU at full load for it, so this client does just that. A URL is checked with
:func:`services.common.ssrf.check_url` (resolve, refuse non-public addresses unless allowlisted; a
passed check is reused for ``CHECK_TTL_S``, like a DNS cache, a refusal never) and each attempt uses
a connection to one of the addresses checked: an idle keep-alive connection whose peer is among
them, or a new one opened to them (never to a name, so no DNS rebinding). TLS uses
the host name for SNI and certificate checks. Redirects are never followed; at most
``max_body`` bytes of a response body are read (a longer body closes the connection).

Interim responses (``100 Continue``, ``103 Early Hints``, any 1xx but 101) are skipped to the final
one; ``101 Switching Protocols`` is refused. A connection goes back to the pool
(:class:`~services.notifier.webhooks.pool.IdlePool`: capped, idle ones expire) only after a response read
exactly to its end; anything else (an error, a timeout, a body too long or of unknown length,
conflicting lengths, a malformed chunk) closes it. A request is sent again on a fresh connection only
when a reused one failed before any byte of a response came back.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from services.common.ssrf import ResolvedTarget, check_url
from services.notifier.webhooks.pool import Conn, IdlePool, Origin

MAX_HEADER_LINES = 100
MAX_LINE = 16 * 1024
MAX_INTERIM = 16
MAX_IDLE_PER_ORIGIN = 4
CHECK_TTL_S = 5.0  # how long a passed SSRF check of a URL is reused (like a DNS cache; refusals are not kept)
MAX_CHECKED = 4096
HEX = frozenset(b"0123456789abcdefABCDEF")


class ProtocolError(Exception):
    """The peer did not speak HTTP/1.1 as expected."""


class StaleConnection(ProtocolError):
    """The connection failed before any byte of a response: the request may be sent again elsewhere."""


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
    pool_idle_s: float = 30.0
    pool_max_idle: int = 256
    pool_per_origin: int = MAX_IDLE_PER_ORIGIN
    _pool: IdlePool = field(init=False)
    _checked: dict[str, tuple[float, ResolvedTarget, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pool = IdlePool(idle_s=self.pool_idle_s, total=self.pool_max_idle, per_origin=self.pool_per_origin)

    async def aclose(self) -> None:
        """Close every idle connection."""
        self._pool.close_all()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``body``; raises :class:`~services.common.ssrf.SsrfError`, ``OSError``, ``ProtocolError``."""
        target, start_line = await self._check(url)
        head = self._head(start_line, body, headers)
        origin = (target.scheme, target.host, target.port)
        conn = self._pool.take(origin, target.addresses)
        if conn is not None:
            try:
                return await self._exchange(origin, conn, head, body)
            except StaleConnection:
                pass  # closed by the peer while idle: once more on a fresh connection
        return await self._exchange(origin, await self._connect(target), head, body)

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

    async def _connect(self, target: ResolvedTarget) -> Conn:
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
            return Conn(reader, writer, address)
        raise error

    @staticmethod
    def _head(start_line: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [start_line, f"content-length: {len(body)}"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ProtocolError("a header contains a line break")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _exchange(self, origin: Origin, conn: Conn, head: bytes, body: bytes) -> Response:
        """One request and response on ``conn``; pooled again only if it ended cleanly, else closed."""
        try:
            response, reusable = await self._roundtrip(conn, head, body)
        except BaseException:  # a timeout (cancellation) or a broken peer: the connection is not reusable
            conn.close()
            raise
        if reusable and conn.usable():
            self._pool.put(origin, conn)
        else:
            conn.close()
        return response

    async def _roundtrip(self, conn: Conn, head: bytes, body: bytes) -> tuple[Response, bool]:
        """The final response and whether the connection is at a clean end of it."""
        try:
            conn.writer.write(head + body)
            await conn.writer.drain()
            line = await conn.reader.readline()
        except OSError as exc:
            raise StaleConnection(f"{type(exc).__name__}: {exc}") from exc
        if not line:
            raise StaleConnection("the connection closed before a response")
        for _ in range(MAX_INTERIM + 1):
            version, status = _status_line(line)
            headers = await self._headers(conn)
            if status >= 200:
                return Response(status, headers), await self._drain(conn, status, headers, version)
            if status == 101:
                raise ProtocolError("101 Switching Protocols is not an answer to a webhook")
            line = await conn.reader.readline()  # an interim 1xx: the final response follows
            if not line:
                raise ProtocolError("the connection closed after an interim response")
        raise ProtocolError("too many interim responses")

    @staticmethod
    async def _headers(conn: Conn) -> dict[str, str]:
        """Header fields up to the blank line; repeated ones joined, conflicting lengths refused."""
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = await conn.reader.readline()
            if line in (b"\r\n", b"\n"):
                return headers
            if not line or len(line) > MAX_LINE:
                raise ProtocolError("bad response headers")
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name in headers and name == "content-length" and headers[name] != value:
                raise ProtocolError("conflicting content-length headers")
            headers[name] = f"{headers[name]}, {value}" if name in headers and name != "content-length" else value
        raise ProtocolError("too many response headers")

    async def _drain(self, conn: Conn, status: int, headers: Mapping[str, str], version: bytes) -> bool:
        """Read (and drop) the body; whether the connection may be reused."""
        keep = version == b"HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        if status in (204, 304):
            return keep
        coding = headers.get("transfer-encoding")
        if coding is not None:
            if "content-length" in headers:
                keep = False  # both framings: read it as chunked, then never trust the connection again
            if coding.lower().rsplit(",", 1)[-1].strip() != "chunked":
                await conn.reader.read(self.max_body)  # the body runs to the end of the connection
                return False
            return await self._drain_chunked(conn) and keep
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()) or len(length) > 18:
                raise ProtocolError("bad content-length")
            size = int(length)
            if size > self.max_body:
                return False
            await conn.reader.readexactly(size)
            return keep
        await conn.reader.read(self.max_body)  # the body runs to the end of the connection
        return False

    async def _drain_chunked(self, conn: Conn) -> bool:
        """Read a chunked body and its trailers; ``False`` when it was too long (the rest is unread)."""
        read = 0
        while True:
            token = (await conn.reader.readline()).split(b";", 1)[0].strip()
            if not token or len(token) > 16 or not HEX.issuperset(token):
                raise ProtocolError("bad chunk size")
            size = int(token, 16)
            if size == 0:
                break
            read += size
            if read > self.max_body:
                return False
            if (await conn.reader.readexactly(size + 2))[-2:] != b"\r\n":
                raise ProtocolError("bad chunk end")
        for _ in range(MAX_HEADER_LINES):  # trailers, up to the blank line
            line = await conn.reader.readline()
            if line in (b"\r\n", b"\n"):
                return True
            if not line:
                return False
        raise ProtocolError("too many trailer lines")


def _status_line(line: bytes) -> tuple[bytes, int]:
    """The version and the three-digit status of a status line."""
    parts = line.split(None, 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.0", b"HTTP/1.1") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {line[:100]!r}")
    return parts[0], int(parts[1])
