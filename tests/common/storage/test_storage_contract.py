"""The storage contract: every backend (local, moto S3, MinIO when Docker runs) passes these."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.config import BaseServiceSettings
from services.common.storage import (
    InvalidKeyError,
    LocalStorage,
    ObjectNotFoundError,
    S3Storage,
    Storage,
    make_storage,
    result_key,
    sanitize_filename,
    upload_key,
)

MiB = 1024 * 1024
BAD_KEYS = ["", "/abs/key", "../escape", "a/../b", "a/./b", "a//b", "a/", "a\\b", "a\x00b", "a\nb"]


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking bytes."""
    block = hashlib.sha256(f"seed-{seed}".encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


async def agen(data: bytes, chunk: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def test_put_head_read_delete(storage: Storage) -> None:
    info = await storage.put("a/b/hello.txt", b"hello world", "text/plain")
    assert (info.key, info.size, info.content_type) == ("a/b/hello.txt", 11, "text/plain")
    head = await storage.head("a/b/hello.txt")
    assert head is not None
    assert (head.size, head.content_type, head.etag) == (11, "text/plain", info.etag)
    assert head.etag
    assert abs(head.last_modified - datetime.now(UTC)) < timedelta(minutes=5)
    assert await storage.read_all("a/b/hello.txt") == b"hello world"

    await storage.put("a/b/hello.txt", b"bye", "application/octet-stream")
    head = await storage.head("a/b/hello.txt")
    assert head is not None
    assert (head.size, head.content_type) == (3, "application/octet-stream")

    await storage.delete("a/b/hello.txt")
    assert await storage.head("a/b/hello.txt") is None
    await storage.delete("a/b/hello.txt")  # idempotent


async def test_missing_object(storage: Storage) -> None:
    assert await storage.head("no/such/key") is None
    with pytest.raises(ObjectNotFoundError):
        await storage.read_all("no/such/key")
    with pytest.raises(ObjectNotFoundError):
        await storage.read_range("no/such/key", 0, 4)


async def test_read_range(storage: Storage) -> None:
    await storage.put("v/clip.mp4", b"\x00\x00\x00\x18ftypmp42rest", "video/mp4")
    assert await storage.read_range("v/clip.mp4", 4, 4) == b"ftyp"
    assert await storage.read_range("v/clip.mp4", 12, 100) == b"rest"
    assert await storage.read_range("v/clip.mp4", 100, 4) == b""
    assert await storage.read_range("v/clip.mp4", 0, 0) == b""


async def test_streaming_read_in_chunks(storage: Storage) -> None:
    data = pattern(3 * MiB + 5)
    await storage.put("big/blob.bin", data, "application/octet-stream")
    chunks = [chunk async for chunk in storage.open_read("big/blob.bin", chunk_size=256 * 1024)]
    assert len(chunks) >= 12
    assert all(len(chunk) <= 256 * 1024 for chunk in chunks)
    assert b"".join(chunks) == data


async def test_put_from_stream_and_file(storage: Storage, tmp_path: Path) -> None:
    data = pattern(11 * MiB + 3, seed=1)  # three parts on S3 (5 MiB parts in the tests)
    info = await storage.put("in/stream.bin", agen(data, 300 * 1024), "application/octet-stream")
    assert info.size == len(data)
    if isinstance(storage, S3Storage):
        assert info.etag.endswith("-3")  # a multipart upload of three parts
    assert await storage.read_all("in/stream.bin") == data

    source = tmp_path / "source.bin"
    source.write_bytes(data[: 2 * MiB])
    info = await storage.put("in/file.bin", source, "application/zip")
    assert (info.size, info.content_type) == (2 * MiB, "application/zip")
    assert await storage.read_all("in/file.bin") == data[: 2 * MiB]

    info = await storage.put("in/empty.bin", agen(b"", 1), "application/octet-stream")
    assert info.size == 0
    assert await storage.read_all("in/empty.bin") == b""


async def test_list_and_delete_prefix(storage: Storage) -> None:
    keys = ["r/acme/j1/a.txt", "r/acme/j1/sub/b.txt", "r/acme/j2/c.txt", "r/other/j3/d.txt", "top.txt"]
    for index, key in enumerate(keys):
        await storage.put(key, b"x" * index, "text/plain")

    assert [info.key async for info in storage.list()] == sorted(keys)
    listed = [info async for info in storage.list("r/acme/")]
    assert [(info.key, info.size) for info in listed] == [(k, keys.index(k)) for k in keys[:3]]
    assert [info.key async for info in storage.list("r/acme/j1")] == keys[:2]
    assert [info.key async for info in storage.list("nothing/")] == []

    assert await storage.delete_prefix("r/acme/j1/") == 2
    assert [info.key async for info in storage.list()] == keys[2:]
    assert await storage.delete_prefix("r/acme/j1/") == 0
    with pytest.raises(InvalidKeyError):
        await storage.delete_prefix("")


async def test_presigned_put_then_get(storage: Storage) -> None:
    body = b"\x89PNG\r\n\x1a\n" + pattern(1000)
    request = await storage.presign_put("up/t1/u1/pic.png", "image/png", len(body), expires_s=300)
    assert request.method == "PUT"
    assert request.headers["Content-Type"] == "image/png"
    assert timedelta(0) < request.expires_at - datetime.now(UTC) <= timedelta(seconds=301)
    async with httpx.AsyncClient(timeout=30) as http:
        put = await http.put(request.url, content=body, headers=request.headers)
        assert put.status_code in (200, 201), put.text
        head = await storage.head("up/t1/u1/pic.png")
        assert head is not None
        assert (head.size, head.content_type) == (len(body), "image/png")

        got = await http.get(await storage.presign_get("up/t1/u1/pic.png", expires_s=60))
        assert got.status_code == 200
        assert got.content == body
        assert got.headers["content-type"] == "image/png"
        assert got.headers["content-length"] == str(len(body))

        url = await storage.presign_get("up/t1/u1/pic.png", filename="Lap 1 (final).png")
        got = await http.get(url)
        assert got.status_code == 200
        assert "attachment" in got.headers["content-disposition"]
        assert "Lap_1_final.png" in got.headers["content-disposition"]


async def test_presigned_get_serves_byte_ranges(storage: Storage) -> None:
    data = pattern(5000, seed=3)
    await storage.put("v/t/j/overlay.mp4", data, "video/mp4")
    url = await storage.presign_get("v/t/j/overlay.mp4")
    async with httpx.AsyncClient(timeout=30) as http:
        for header, expected in (
            ("bytes=100-199", data[100:200]),
            ("bytes=4990-", data[4990:]),
            ("bytes=-10", data[-10:]),
            ("bytes=4000-9999", data[4000:]),
        ):
            got = await http.get(url, headers={"Range": header})
            assert got.status_code == 206, (header, got.text)
            assert got.content == expected
            assert got.headers["content-range"].endswith("/5000")
        assert (await http.get(url, headers={"Range": "bytes=6000-"})).status_code == 416


async def test_failed_stream_leaves_no_object(storage: Storage) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield pattern(6 * MiB)  # past one S3 part: a multipart upload has begun
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await storage.put("in/broken.bin", broken(), "application/octet-stream")
    assert await storage.head("in/broken.bin") is None
    if isinstance(storage, S3Storage):
        uploads = await (await storage.client()).list_multipart_uploads(Bucket=storage.bucket)
        assert uploads.get("Uploads", []) == []


async def test_presigned_get_of_missing_object_fails(storage: Storage) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        got = await http.get(await storage.presign_get("never/written.bin"))
    assert got.status_code in (403, 404)


@pytest.mark.slow
async def test_50_mb_presigned_upload_round_trip(storage: Storage) -> None:
    size, chunk = 50 * MiB, MiB
    block = pattern(chunk, seed=7)
    expected = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for index in range(size // chunk):
            piece = index.to_bytes(8, "big") + block[8:]
            expected.update(piece)
            yield piece

    request = await storage.presign_put("up/t/u/big.mp4", "video/mp4", size)
    async with httpx.AsyncClient(timeout=120) as http:
        put = await http.put(request.url, content=body(), headers=request.headers)
        assert put.status_code in (200, 201), put.text
        head = await storage.head("up/t/u/big.mp4")
        assert head is not None
        assert head.size == size

        via_get = hashlib.sha256()
        async with http.stream("GET", await storage.presign_get("up/t/u/big.mp4")) as got:
            assert got.status_code == 200
            async for piece in got.aiter_bytes():
                via_get.update(piece)
    assert via_get.hexdigest() == expected.hexdigest()

    via_read = hashlib.sha256()
    async for piece in storage.open_read("up/t/u/big.mp4", chunk_size=4 * MiB):
        via_read.update(piece)
    assert via_read.hexdigest() == expected.hexdigest()


async def test_presigned_put_refuses_other_content_type(storage: Storage, verifies_signatures: bool) -> None:
    if not verifies_signatures:
        pytest.skip("moto does not verify pre-signed signatures (MinIO and AWS do)")
    request = await storage.presign_put("up/t/u/clip.mp4", "video/mp4", 4)
    headers = {**request.headers, "Content-Type": "text/html"}
    async with httpx.AsyncClient(timeout=30) as http:
        put = await http.put(request.url, content=b"\x00\x01\x02\x03", headers=headers)
    assert 400 <= put.status_code < 500
    assert await storage.head("up/t/u/clip.mp4") is None


async def test_bad_keys_are_refused(storage: Storage) -> None:
    for key in BAD_KEYS:
        with pytest.raises(InvalidKeyError):
            await storage.put(key, b"x", "text/plain")
        with pytest.raises(InvalidKeyError):
            await storage.head(key)
        with pytest.raises(InvalidKeyError):
            await storage.presign_put(key, "text/plain", 1)
        with pytest.raises(InvalidKeyError):
            await storage.presign_get(key)
        with pytest.raises(InvalidKeyError):
            await storage.delete(key)
        with pytest.raises(InvalidKeyError):
            await storage.read_all(key)
    with pytest.raises(InvalidKeyError):
        [info async for info in storage.list("../")]
    assert [info async for info in storage.list()] == []


def test_make_storage_picks_the_backend(tmp_path: Path) -> None:
    common: dict[str, Any] = {"profile": "test", "data_dir": tmp_path, "url": "http://gw.example/"}
    local = make_storage(BaseServiceSettings(**common))
    assert isinstance(local, LocalStorage)
    assert local.files.root == (tmp_path / "blobs").resolve()
    assert local.base_url == "http://gw.example"
    s3 = make_storage(
        BaseServiceSettings(
            **common,
            storage_backend="s3",
            storage_bucket="media",
            s3_endpoint_url="http://minio:9000",
            s3_region="eu-central-1",
            signed_url_ttl_s=600,
        )
    )
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.endpoint_url, s3.region, s3.default_ttl_s) == (
        "media",
        "http://minio:9000",
        "eu-central-1",
        600,
    )


async def test_s3_urls_are_signed_for_the_public_endpoint() -> None:
    async with S3Storage(
        "media",
        endpoint_url="http://minio:9000",
        public_endpoint_url="https://files.example.com",
        access_key_id="k",
        secret_access_key="s",
    ) as s3:
        put = await s3.presign_put("uploads/t/u/a.mp4", "video/mp4", 42)
        assert put.url.startswith("https://files.example.com/media/uploads/t/u/a.mp4?")
        assert "content-length%3Bcontent-type%3Bhost" in put.url
        assert put.headers == {"Content-Type": "video/mp4", "Content-Length": "42"}
        get = await s3.presign_get("uploads/t/u/a.mp4", filename="a.mp4")
        assert get.startswith("https://files.example.com/media/uploads/t/u/a.mp4?")


def test_key_layout() -> None:
    assert upload_key("", "acme", "u1", "clip.mp4") == "uploads/acme/u1/clip.mp4"
    assert upload_key("dev/", "acme", "u1", "../../etc/passwd") == "dev/uploads/acme/u1/passwd"
    assert upload_key("dev", "acme", "u1", "C:\\Users\\me\\Lap 1 (best).MOV") == ("dev/uploads/acme/u1/Lap_1_best.MOV")
    assert result_key("", "acme", "j1", "frames/0001.png") == "results/acme/j1/frames/0001.png"
    assert result_key("p/", "acme", "j1", "../overlay.mp4") == "p/results/acme/j1/overlay.mp4"
    for bad in ("", "a/b", "..", "."):
        with pytest.raises(InvalidKeyError):
            upload_key("", bad, "u1", "f.mp4")
        with pytest.raises(InvalidKeyError):
            result_key("", "acme", bad, "f.mp4")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "file"),
        ("...", "file"),
        (".bashrc", "bashrc"),
        ("vidéo été.mp4", "vid_o_t.mp4"),
        ("a" * 300 + ".mp4", "a" * 196 + ".mp4"),
        ("x\x00y.png", "x_y.png"),
    ],
)
def test_sanitize_filename(name: str, expected: str) -> None:
    assert sanitize_filename(name) == expected
