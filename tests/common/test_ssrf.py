"""The SSRF guard: every blocked range (fake resolver), URL rules, the allowlist, and pinned connections."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest

from services.common.ssrf import Resolver, SsrfError, check_url
from services.common.ssrf_transport import GuardedTransport, PinnedTransport, guarded_client


def resolving_to(*addresses: str) -> tuple[list[int], Resolver]:
    """A fake resolver answering ``addresses``, and the list it counts its calls in."""
    calls: list[int] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(port)
        return list(addresses)

    return calls, resolve


async def no_dns(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"{host} is a literal and must not be resolved")


BLOCKED = [
    *["10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1", "127.0.0.1", "127.255.255.254"],
    *["169.254.169.254", "100.64.0.1", "100.127.255.254", "0.0.0.0", "0.1.2.3", "192.0.0.8"],
    *["198.18.0.1", "198.19.255.255", "192.0.2.1", "198.51.100.7", "203.0.113.9", "192.88.99.1"],
    *["224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255"],
    *["::", "::1", "fe80::1", "fec0::1", "fc00::1", "fd12:3456::1", "ff02::1", "2001:db8::1", "100::1"],
    *["::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:8.8.8.8", "::127.0.0.1"],
    *["::10.0.0.1", "2002:7f00:1::1", "2002:a00:1::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2"],
    *["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1"],
]


@pytest.mark.parametrize("address", BLOCKED)
async def test_a_name_resolving_to_a_blocked_address_is_refused(address: str) -> None:
    _, resolve = resolving_to(address)
    with pytest.raises(SsrfError, match="resolves to"):
        await check_url("https://hooks.example.com/in", resolver=resolve)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2002:808:808::1"])
async def test_public_addresses_pass(address: str) -> None:
    _, resolve = resolving_to(address)
    target = await check_url("https://Hooks.Example.com/in", resolver=resolve)
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 443)
    assert target.addresses == (address,)
    assert not target.allowlisted


async def test_one_blocked_address_among_public_ones_is_enough() -> None:
    _, resolve = resolving_to("8.8.8.8", "10.0.0.1")
    with pytest.raises(SsrfError, match=r"10\.0\.0\.1 is a private address"):
        await check_url("https://hooks.example.com/", resolver=resolve)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://2130706433/",
        "https://0x7f.0.0.1/",
        "https://0x7f000001/",
        "https://127.1/",
        "https://017700000001/",
        "https://0177.0.0.1/",
        "https://127.0.0.1./",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:7f00:1]/",
        "https://[0:0:0:0:0:ffff:127.0.0.1]/",
        "https://[fe80::1%25eth0]/",
        "https://[::1]:8443/",
        "https://169.254.169.254/latest/meta-data/",
    ],
)
async def test_numeric_tricks_are_caught_without_dns(url: str) -> None:
    with pytest.raises(SsrfError):
        await check_url(url, resolver=no_dns)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://8.8.8.8/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://8.8.8.8/", "scheme"),
        ("https://user:pw@8.8.8.8/", "user name"),
        ("https://user@8.8.8.8/", "user name"),
        ("http://8.8.8.8/", "https"),
        ("https://8.8.8.8:99999/", "port"),
        ("https:///nohost", "host"),
        ("https://bad_host..example/", "host"),
        ("not a url", "scheme|URL"),
    ],
)
async def test_url_rules(url: str, reason: str) -> None:
    with pytest.raises(SsrfError, match=reason):
        await check_url(url, resolver=no_dns)


async def test_http_to_a_public_host_needs_allow_http() -> None:
    target = await check_url("http://8.8.8.8:8080/x", allow_http=True, resolver=no_dns)
    assert (target.scheme, target.port, target.addresses) == ("http", 8080, ("8.8.8.8",))


async def test_allowlist_by_ip_network_and_name() -> None:
    target = await check_url("http://127.0.0.1:9/", ["127.0.0.1"], resolver=no_dns)
    assert target.allowlisted
    assert target.addresses == ("127.0.0.1",)
    assert (await check_url("http://[::ffff:127.0.0.1]/", ["127.0.0.0/8"], resolver=no_dns)).allowlisted
    _, both = resolving_to("127.0.0.1", "::1")
    with pytest.raises(SsrfError, match="::1"):
        await check_url("http://localhost/", ["127.0.0.1"], resolver=both)
    assert (await check_url("http://localhost/", ["127.0.0.1", "[::1]"], resolver=both)).allowlisted
    named = await check_url("http://LOCALHOST./", [" localhost. "], resolver=both)
    assert named.allowlisted
    assert (named.host, named.addresses) == ("localhost.", ("127.0.0.1", "::1"))
    with pytest.raises(SsrfError):
        await check_url("http://10.0.0.1/", ["127.0.0.1"], resolver=no_dns)


async def test_resolution_failures_are_refused() -> None:
    async def fails(host: str, port: int) -> Sequence[str]:
        raise OSError("no such host")

    async def hangs(host: str, port: int) -> Sequence[str]:
        await asyncio.sleep(10)
        return []

    _, empty = resolving_to()
    _, garbage = resolving_to("not-an-ip")
    for resolver in (fails, empty, garbage):
        with pytest.raises(SsrfError, match=r"resolve|address"):
            await check_url("https://hooks.example.com/", resolver=resolver)
    with pytest.raises(SsrfError, match="could not be resolved"):
        await check_url("https://hooks.example.com/", resolver=hangs, timeout_s=0.05)


async def test_the_system_resolver_sees_that_localhost_is_loopback() -> None:
    with pytest.raises(SsrfError, match=r"'localhost' resolves to .* loopback"):
        await check_url("https://localhost:1/")


# -- pinned connections over real HTTP on 127.0.0.1 ----------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[int]:
    """A tiny HTTP/1.1 server on 127.0.0.1: echoes the Host header; ``/redirect`` answers 302."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        host = next(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("host:"))
        status = "302 Found\r\nLocation: http://169.254.169.254/" if " /redirect " in head else "200 OK"
        body = host.encode()
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_pinned_transport_connects_only_to_the_checked_address(receiver: int) -> None:
    answers = [["127.0.0.1"]]

    async def rebinding(host: str, port: int) -> Sequence[str]:
        return answers.pop() if answers else ["10.9.9.9"]  # a second lookup would get another answer

    url = f"http://rebind.test:{receiver}/hook"
    target = await check_url(url, ["127.0.0.1"], resolver=rebinding)
    assert target.addresses == ("127.0.0.1",)
    async with httpx.AsyncClient(transport=PinnedTransport(target)) as client:
        for _ in range(2):
            response = await client.post(url, content=b"{}")
            assert response.status_code == 200
            assert response.text == f"rebind.test:{receiver}"  # the Host header keeps the name
        with pytest.raises(httpx.ConnectError, match="not checked"):
            await client.get(f"http://elsewhere.test:{receiver}/")
    assert answers == []  # resolved once, at the check


async def test_guarded_client_checks_every_request_and_never_follows_redirects(receiver: int) -> None:
    answers = [["10.9.9.9"], ["127.0.0.1"]]

    async def rebinding(host: str, port: int) -> Sequence[str]:
        return answers.pop()

    async with guarded_client(["127.0.0.1"], resolver=rebinding) as client:
        response = await client.get(f"http://hooks.test:{receiver}/redirect")
        assert response.status_code == 302  # returned as is: the redirect is not followed
        with pytest.raises(SsrfError, match=r"10\.9\.9\.9"):
            await client.get(f"http://hooks.test:{receiver}/")
    assert isinstance(client._transport, GuardedTransport)


async def test_tls_uses_the_host_name_for_sni_and_certificate(tmp_path: Path) -> None:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "hooks.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder(subject_name=name, issuer_name=name, public_key=key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    seen_sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, sni, ctx: seen_sni.append(sni)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    _, resolve = resolving_to("127.0.0.1")
    async with server:
        target = await check_url(f"https://hooks.test:{port}/", ["127.0.0.1"], resolver=resolve)
        async with httpx.AsyncClient(transport=PinnedTransport(target, verify=client_ctx)) as client:
            assert (await client.get(f"https://hooks.test:{port}/")).status_code == 204
    assert seen_sni == ["hooks.test"]
