"""The local backend's signed URLs and the gateway's blob routes, attacked over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import schemathesis

from bench.harness.secrets import SIGNING_SECRET
from services.cli.openapi import OPENAPI_PATH
from services.common.nats.server.embedded import EmbeddedNats
from services.common.storage import InvalidKeyError, LocalStorage
from services.common.storage.signing import (
    Grant,
    SignatureExpiredError,
    SignatureInvalidError,
    signed_url,
    verify,
)
from services.gateway.app import create_app
from tests.support.gateway import Gateway, gateway_settings

SECRET = SIGNING_SECRET.encode()


def with_query(url: str, **changes: str) -> str:
    """``url`` with some query parameters replaced."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_path(url: str, path: str) -> str:
    """``url`` with another (already encoded) path."""
    return urlunsplit(urlsplit(url)._replace(path=path))


def files_named(root: Path, name: str) -> list[Path]:
    """Every file called ``name`` under ``root``."""
    return [path for path in root.rglob("*") if path.name == name]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def assert_problem(response: httpx.Response, status: int, title: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    if title is not None:
        assert body["title"] == title


def test_verify_tells_tampered_from_expired() -> None:
    grant = Grant(op="put", key="a/b.mp4", expires_at=1_000, content_type="video/mp4", max_size=10)
    query = dict(parse_qsl(urlsplit(signed_url("http://x", SECRET, grant)).query))
    assert verify(SECRET, "put", "a/b.mp4", query, now=999) == grant
    with pytest.raises(SignatureExpiredError):
        verify(SECRET, "put", "a/b.mp4", query, now=1_000)
    for changed in ({"exp": "2000"}, {"ct": "text/html"}, {"max": "11"}, {"sig": query["sig"][:-1] + "A"}):
        with pytest.raises(SignatureInvalidError):
            verify(SECRET, "put", "a/b.mp4", query | changed, now=999)
    with pytest.raises(SignatureInvalidError):
        verify(SECRET, "put", "a/c.mp4", query, now=999)
    with pytest.raises(SignatureInvalidError):
        verify(SECRET, "get", "a/b.mp4", query, now=999)
    with pytest.raises(SignatureInvalidError):
        verify(b"another-secret", "put", "a/b.mp4", query, now=999)
    with pytest.raises(SignatureInvalidError):
        verify(SECRET, "put", "a/b.mp4", query | {"exp": "-5"}, now=999)


async def test_tampered_urls_are_refused(local_storage: LocalStorage, http: httpx.AsyncClient) -> None:
    await local_storage.put("t/u/secret.bin", b"secret", "application/octet-stream")
    put = await local_storage.presign_put("t/u/new.mp4", "video/mp4", 100)
    get = await local_storage.presign_get("t/u/secret.bin")
    sig = dict(parse_qsl(urlsplit(get).query))["sig"]
    exp = int(dict(parse_qsl(urlsplit(get).query))["exp"])

    for url in (
        with_query(get, sig=("B" if sig[0] == "A" else "A") + sig[1:]),
        with_query(get, exp=str(exp + 3600)),
        with_query(get, sig=""),
        with_path(get, "/v1/blobs/t/u/other.bin"),
        with_query(put.url, op="get"),
    ):
        assert_problem(await http.get(url), 403, "Invalid signature")

    headers = put.headers
    for url, sent_headers in (
        (with_query(put.url, ct="text/plain"), {"Content-Type": "text/plain"}),
        (with_query(put.url, max="1000000"), headers),
        (with_query(put.url, exp=str(exp + 3600)), headers),
        (with_path(put.url, "/v1/blobs/t/u/elsewhere.mp4"), headers),
    ):
        assert_problem(await http.put(url, content=b"x", headers=sent_headers), 403, "Invalid signature")
    wrong_type = await http.put(put.url, content=b"x", headers={"Content-Type": "text/plain"})
    assert_problem(wrong_type, 403, "Content-Type mismatch")
    assert [info.key async for info in local_storage.list()] == ["t/u/secret.bin"]


async def test_expired_urls_are_refused(gateway: Gateway, http: httpx.AsyncClient) -> None:
    past = LocalStorage.from_settings(gateway.settings, clock=lambda: time.time() - 3600)
    await past.put("t/u/a.txt", b"a", "text/plain")
    get = await past.presign_get("t/u/a.txt", expires_s=60)
    assert_problem(await http.get(get), 403, "Signature expired")
    put = await past.presign_put("t/u/b.txt", "text/plain", 10, expires_s=60)
    assert_problem(await http.put(put.url, content=b"b", headers=put.headers), 403, "Signature expired")
    assert await past.head("t/u/b.txt") is None


async def test_over_size_put_is_refused_without_leftovers(local_storage: LocalStorage, http: httpx.AsyncClient) -> None:
    await local_storage.put("t/u/keep.bin", b"original", "application/octet-stream")
    put = await local_storage.presign_put("t/u/keep.bin", "application/octet-stream", 1000)

    declared = await http.put(put.url, content=b"x" * 1001, headers=put.headers)
    assert_problem(declared, 413)

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"y" * 100

    streamed = await http.put(put.url, content=chunked(), headers=put.headers)
    assert_problem(streamed, 413)
    assert await local_storage.read_all("t/u/keep.bin") == b"original"
    assert list(local_storage.files.tmp.iterdir()) == []

    exact = await http.put(put.url, content=b"z" * 1000, headers=put.headers)
    assert exact.status_code == 201
    assert await local_storage.read_all("t/u/keep.bin") == b"z" * 1000


async def test_a_key_that_is_a_folder_of_objects_is_a_409_naming_the_key_not_the_servers_path(
    local_storage: LocalStorage, http: httpx.AsyncClient
) -> None:
    await local_storage.put("t/u/clip.mp4/inner.bin", b"inner", "application/octet-stream")
    put = await local_storage.presign_put("t/u/clip.mp4", "video/mp4", 100)
    refused = await http.put(put.url, content=b"v" * 10, headers=put.headers)
    assert_problem(refused, 409, "Key conflict")
    assert "t/u/clip.mp4" in refused.json()["detail"]
    assert str(local_storage.files.root) not in refused.text
    assert list(local_storage.files.tmp.iterdir()) == []
    assert await local_storage.read_all("t/u/clip.mp4/inner.bin") == b"inner"


async def test_missing_object_is_404(local_storage: LocalStorage, http: httpx.AsyncClient) -> None:
    assert_problem(await http.get(await local_storage.presign_get("t/u/nothing.bin")), 404)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/blobs/..%2f..%2fescape.txt",
        "/v1/blobs/a/..%2F..%2F..%2Fescape.txt",
        "/v1/blobs//abs/escape.txt",
        "/v1/blobs/a%5c..%5cescape.txt",
        "/v1/blobs/a%00b",
        "/v1/blobs/%2e%2e/escape.txt",
    ],
)
async def test_traversal_urls_are_refused(
    local_storage: LocalStorage, http: httpx.AsyncClient, tmp_path: Path, path: str
) -> None:
    put = await local_storage.presign_put("t/u/fine.txt", "text/plain", 10)
    response = await http.put(with_path(put.url, path), content=b"evil", headers=put.headers)
    assert_problem(response, 400, "Invalid key")
    assert_problem(await http.get(with_path(put.url, path)), 400, "Invalid key")
    assert not files_named(tmp_path, "escape.txt")


async def test_symlinks_cannot_escape_the_root(
    local_storage: LocalStorage, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    (local_storage.files.objects / "evil").symlink_to(outside, target_is_directory=True)
    (local_storage.files.objects / "link.txt").symlink_to(outside / "secret.txt")

    for key in ("evil/secret.txt", "link.txt", "evil/new.txt"):
        with pytest.raises(InvalidKeyError):
            await local_storage.head(key)
        with pytest.raises(InvalidKeyError):
            await local_storage.presign_get(key)
        with pytest.raises(InvalidKeyError):
            await local_storage.put(key, b"x", "text/plain")
        get = signed_url(local_storage.base_url, SECRET, Grant(op="get", key=key, expires_at=2**40))
        assert_problem(await http.get(get), 400, "Invalid key")
        grant = Grant(op="put", key=key, expires_at=2**40, content_type="text/plain", max_size=10)
        put = signed_url(local_storage.base_url, SECRET, grant)
        response = await http.put(put, content=b"x", headers={"Content-Type": "text/plain"})
        assert_problem(response, 400, "Invalid key")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert [info.key async for info in local_storage.list()] == []


def assert_readiness_documented(response: httpx.Response) -> None:
    """``response`` of ``/readyz`` has a status and a body the committed OpenAPI document gives it."""
    document = json.loads(OPENAPI_PATH.read_text())
    assert str(response.status_code) in document["paths"]["/readyz"]["get"]["responses"]
    schemathesis.openapi.from_dict(document)["/readyz"]["GET"].validate_response(response)


async def test_health_and_readiness(gateway: Gateway, http: httpx.AsyncClient) -> None:
    assert (await http.get(f"{gateway.url}/healthz")).json() == {"status": "ok"}
    ready = await http.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "checks": {"storage": "ok", "nats": "ok"}}
    assert_readiness_documented(ready)


async def test_not_ready_when_nats_goes_away(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats").start()
    settings = gateway_settings(tmp_path, "http://testserver", nats_url=server.url)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport) as client:
            assert (await client.get("http://testserver/readyz")).status_code == 200
            server.stop()
            not_ready = await client.get("http://testserver/readyz")
            assert_problem(not_ready, 503)
            assert not_ready.json()["checks"]["storage"] == "ok"
            assert not_ready.json()["checks"]["nats"] != "ok"
            assert_readiness_documented(not_ready)
    finally:
        server.stop()
    assert app.state.nats is None
