"""SSRF guard for outbound webhook requests, the check: refuse a URL whose host is not a public address.

:func:`check_url` parses a URL the way httpx will send it, resolves its host once, and refuses it
when any resolved address is not publicly routable: private, loopback, link-local, CGNAT,
multicast, reserved, documentation, benchmarking, unspecified, site-local or unique-local IPv6,
and the IPv6 forms that embed such an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, NAT64;
Teredo is refused outright). Numeric tricks (``http://2130706433/``, ``0x7f.1``, ``127.1``)
are parsed as the legacy IPv4 literals they are, so they meet the same address checks.

Rules: scheme ``http`` or ``https``; no user info; ``http`` only for allowlisted hosts or when the
caller passes ``allow_http`` (setting ``webhook_allow_http``). The allowlist (setting
``webhook_allow_hosts``) holds host names (``localhost``), IPs (``127.0.0.1``) or networks
(``127.0.0.0/8``): a listed name skips the address checks; a listed IP or network admits those
addresses. It exists for the dev profile and tests.

Connecting only to what was checked is :mod:`services.common.ssrf_transport`'s part.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``: how a host name becomes IP addresses."""

RESOLVE_TIMEOUT_S = 5.0
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_LEGACY_V4 = re.compile(r"^[0-9a-fx.]+$")


class SsrfError(ValueError):
    """A URL the guard refuses; ``reason`` says why, fit for an API error message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """A checked URL's origin: connect to ``addresses`` only, send ``host`` as SNI and Host."""

    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]
    allowlisted: bool = False


_REASONS: dict[str, tuple[str, ...]] = {
    "a private address": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
    "a loopback address": ("127.0.0.0/8", "::1/128"),
    "a link-local address": ("169.254.0.0/16", "fe80::/10"),
    "a carrier-grade NAT address": ("100.64.0.0/10",),
    "a multicast address": ("224.0.0.0/4", "ff00::/8"),
    "a reserved address": ("240.0.0.0/4", "192.88.99.0/24", "100::/64", "64:ff9b:1::/48"),
    "an unspecified or 'this network' address": ("0.0.0.0/8", "::/128"),
    "an IETF protocol or benchmarking address": ("192.0.0.0/24", "198.18.0.0/15"),
    "a documentation address": ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"),
    "a unique-local or site-local address": ("fc00::/7", "fec0::/10"),
    "a Teredo address": ("2001::/32",),
}
_BLOCKED = tuple((ipaddress.ip_network(net), why) for why, nets in _REASONS.items() for net in nets)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be a webhook destination, or ``None`` when it is publicly routable."""
    for net, why in _BLOCKED:
        if ip.version == net.version and ip in net:
            return why
    embedded = _embedded_v4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if embedded is not None:
        inner = blocked_reason(embedded)
        if int(ip) >> 32 in (0, 0xFFFF):  # IPv4-mapped or IPv4-compatible: refused whatever the IPv4
            return f"an IPv4-mapped or -compatible form of {embedded}" + (f" ({inner})" if inner else "")
        if inner:
            return f"an IPv6 address embedding {embedded} ({inner})"
    if ip.is_multicast or ip.is_reserved or not ip.is_global:
        return "not a globally routable address"
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if int(ip) < 2**32:  # IPv4-compatible ::a.b.c.d (deprecated); :: and ::1 are caught before
        return ipaddress.IPv4Address(int(ip))
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _valid_hostname(name: str) -> bool:
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The addresses of ``host`` from the system resolver (``loop.getaddrinfo``)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _literal(host: str) -> IPAddress | None:
    """``host`` as an IP when it is one, including legacy IPv4 forms (decimal, octal, hex, short)."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise SsrfError(f"{host!r} is not a valid IPv6 address") from None
    if _LEGACY_V4.fullmatch(host) and host[:1].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class _Allowlist:
    names: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> _Allowlist:
        names: set[str] = set()
        networks = []
        for entry in (e.strip().lower().strip("[]").rstrip(".") for e in entries):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if entry:
                    names.add(entry)
        return cls(frozenset(names), tuple(networks))

    def admits(self, ip: IPAddress) -> bool:
        plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        return any(plain.version == net.version and plain in net for net in self.networks)


async def check_url(
    url: str,
    allow_hosts: Iterable[str] = (),
    *,
    allow_http: bool = False,
    resolver: Resolver = system_resolver,
    timeout_s: float = RESOLVE_TIMEOUT_S,
) -> ResolvedTarget:
    """Check ``url`` against the rules above; its origin and checked addresses, or :class:`SsrfError`."""
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError):
        raise SsrfError("not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise SsrfError("the URL scheme must be https (or http where allowed)")
    if parsed.userinfo:
        raise SsrfError("the URL may not contain a user name or password")
    host = parsed.raw_host.decode("ascii")
    if port is not None and not 0 < port < 65536:
        raise SsrfError(f"port {port} is out of range")
    port = port or (443 if parsed.scheme == "https" else 80)
    name = host.lower().rstrip(".")
    ip = _literal(name)
    if ip is None and not _valid_hostname(name):
        raise SsrfError("the URL has no valid host name")
    allow = _Allowlist.parse(allow_hosts)
    if ip is not None:
        addresses: list[IPAddress] = [ip]
    else:
        addresses = await _resolve(host, port, resolver, timeout_s)
    named = name in allow.names
    if not named:
        for address in addresses:
            if not allow.admits(address) and (why := blocked_reason(address)):
                where = f"{host!r} resolves to {address}" if ip is None else f"{address}"
                raise SsrfError(f"{where} is {why}; webhooks must reach a public address")
    allowlisted = named or all(allow.admits(a) for a in addresses)
    if parsed.scheme == "http" and not (allowlisted or allow_http):
        raise SsrfError("the URL must use https")
    return ResolvedTarget(parsed.scheme, host, port, tuple(str(a) for a in addresses), allowlisted)


async def _resolve(host: str, port: int, resolver: Resolver, timeout_s: float) -> list[IPAddress]:
    try:
        answers = await asyncio.wait_for(resolver(host, port), timeout_s)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise SsrfError(f"the host {host!r} could not be resolved") from exc
    found: list[IPAddress] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer.split("%", 1)[0])
        except ValueError:
            raise SsrfError(f"the host {host!r} resolved to a non-address {answer!r}") from None
        if address not in found:
            found.append(address)
    if not found:
        raise SsrfError(f"the host {host!r} has no address")
    return found
