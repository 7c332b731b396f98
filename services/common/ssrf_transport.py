"""The SSRF guard's connections: they reach only what :func:`~services.common.ssrf.check_url` checked.

:class:`PinnedTransport` (one checked target) and :class:`GuardedTransport` (checks each request)
are httpx transports whose connections go only to the checked addresses, so a DNS answer that
changes after the check (DNS rebinding) is never used; TLS SNI and ``Host`` stay the host name.
Neither follows redirects; with :func:`guarded_client`, neither does the client.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from services.common.ssrf import ResolvedTarget, Resolver, check_url, system_resolver

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class _PinningBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to the addresses pinned for a ``(host, port)``."""

    def __init__(self, pins: dict[tuple[str, int], tuple[str, ...]]) -> None:
        self._pins = pins
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self._pins.get((host, port))
        if not addresses:
            raise httpcore.ConnectError(f"{host}:{port} was not checked by the SSRF guard")
        error: Exception = httpcore.ConnectError("no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport that reaches ``target``'s origin only, at its checked addresses only.

    It replaces the connection pool httpx builds (``_pool``) with one whose network backend is
    pinned; pass one ``ssl.SSLContext`` as ``verify`` to share it between many transports.
    """

    def __init__(
        self,
        target: ResolvedTarget | None = None,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        if not isinstance(verify, ssl.SSLContext):
            verify = httpx.create_ssl_context(verify=verify, trust_env=False)
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self._pins: dict[tuple[str, int], tuple[str, ...]] = {}
        if target is not None:
            self._pins[(target.host, target.port)] = target.addresses
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinningBackend(self._pins),
        )


class GuardedTransport(PinnedTransport):
    """Checks every request's URL with :func:`check_url`, then connects only to what it checked."""

    def __init__(
        self,
        allow_hosts: Iterable[str] = (),
        *,
        allow_http: bool = False,
        resolver: Resolver = system_resolver,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(verify=verify)
        self._allow, self._allow_http, self._resolver = tuple(allow_hosts), allow_http, resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Check, pin, send; raises :class:`~services.common.ssrf.SsrfError` for a refused URL."""
        target = await check_url(str(request.url), self._allow, allow_http=self._allow_http, resolver=self._resolver)
        self._pins[(target.host, target.port)] = target.addresses
        return await super().handle_async_request(request)


def guarded_client(
    allow_hosts: Iterable[str] = (),
    *,
    allow_http: bool = False,
    resolver: Resolver = system_resolver,
    timeout_s: float = 10.0,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` over a :class:`GuardedTransport`: no redirects, no proxies from env."""
    transport = GuardedTransport(allow_hosts, allow_http=allow_http, resolver=resolver)
    return httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False, timeout=timeout_s)
