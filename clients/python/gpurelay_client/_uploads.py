"""Uploads: a file, bytes or a binary file object → ``POST /v1/uploads``, the bytes to the pre-signed
URL (streamed, with progress), then complete. The flows here are run by both clients."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Union

from gpurelay_client._core import Body, Flow, Request, call, segment, send
from gpurelay_client._models import PresignedUpload, UploadOut

UploadSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]
"""What can be uploaded: a path, bytes, or a binary file object (read from where it stands)."""
ProgressCallback = Callable[[int, int], None]
"""``on_progress(sent_bytes, total_bytes)``, called as each chunk goes out."""
CHUNK = 1024 * 1024
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".zip": "application/zip",
}
EXTENSIONS = {"video/mp4": ".mp4", "image/jpeg": ".jpg", "image/png": ".png", "application/zip": ".zip"}


def sniff(head: bytes) -> str | None:
    """The content type of a file from its first bytes, for the formats the API takes."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:10] == b"qt" else "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    return None


def _file_body(path: Path) -> tuple[Body, bytes]:
    def chunks() -> Iterator[bytes]:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk

    with path.open("rb") as handle:
        head = handle.read(16)
    return Body(path.stat().st_size, chunks), head


def _bytes_body(data: bytes) -> tuple[Body, bytes]:
    view = memoryview(data)
    return Body(len(data), lambda: (bytes(view[i : i + CHUNK]) for i in range(0, len(view), CHUNK))), data[:16]


def _stream_body(handle: IO[bytes]) -> tuple[Body, bytes]:
    if not handle.seekable():
        return _bytes_body(handle.read())
    start = handle.tell()
    size = handle.seek(0, io.SEEK_END) - start
    handle.seek(start)
    head = handle.read(16)

    def chunks() -> Iterator[bytes]:
        handle.seek(start)
        left = size
        while left > 0 and (chunk := handle.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk

    return Body(size, chunks), head


def open_source(source: UploadSource, filename: str | None, content_type: str | None) -> tuple[Body, str, str]:
    """The body, file name and content type of ``source`` (named by its path's suffix, else sniffed)."""
    name = filename
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no file {str(path)!r} to upload")
        body, head = _file_body(path)
        name = name or path.name
    elif isinstance(source, bytes | bytearray | memoryview):
        body, head = _bytes_body(bytes(source))
    else:
        body, head = _stream_body(source)
        name = name or Path(str(getattr(source, "name", "") or "")).name or None
    kind = content_type or CONTENT_TYPES.get(Path(name or "").suffix.lower()) or sniff(head)
    if kind is None:
        raise ValueError(f"cannot tell the content type of {name or 'these bytes'!r}: pass content_type=")
    return body, name or f"upload{EXTENSIONS.get(kind, '')}", kind


def create_flow(filename: str, content_type: str, size: int, retries: int) -> Flow[PresignedUpload]:
    """``POST /v1/uploads``: a pending upload and where to PUT its bytes."""
    body = {"filename": filename, "content_type": content_type, "size": size}
    return call(Request("POST", "/v1/uploads", json=body, retryable=False), PresignedUpload, retries)


def complete_flow(upload_id: str, retries: int) -> Flow[UploadOut]:
    """``POST /v1/uploads/{id}/complete`` (idempotent: completing twice answers the same record)."""
    return call(Request("POST", f"/v1/uploads/{segment(upload_id)}/complete", retryable=True), UploadOut, retries)


def upload_flow(
    source: UploadSource,
    content_type: str | None,
    filename: str | None,
    on_progress: ProgressCallback | None,
    retries: int,
) -> Flow[UploadOut]:
    """Create, PUT the bytes with the pre-signed headers (no API key goes to storage), complete."""
    body, name, kind = open_source(source, filename, content_type)
    presigned = yield from create_flow(name, kind, body.size, retries)
    body.on_progress = on_progress
    headers = {**presigned.headers, "Content-Length": str(body.size)}
    yield from send(Request(presigned.method, presigned.url, content=body, headers=headers, storage=True), retries)
    return (yield from complete_flow(presigned.id, retries))


def get_flow(upload_id: str, retries: int) -> Flow[UploadOut]:
    """``GET /v1/uploads/{id}``."""
    return call(Request("GET", f"/v1/uploads/{segment(upload_id)}"), UploadOut, retries)
