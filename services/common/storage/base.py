"""The storage interface every backend implements, its value types, errors and key helpers.

Keys are relative, ``/``-separated object names. They never start with ``/``, never contain
``\\``, NUL or other control characters, and have no empty, ``.`` or ``..`` segment, so a key
means the same object on S3 and on the local file system. The key layout follows
ARCHITECTURE.md: ``{prefix}uploads/{tenant}/{upload_id}/{filename}`` and
``{prefix}results/{tenant}/{job_id}/{artifact}``.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

DEFAULT_CHUNK_SIZE = 1024 * 1024
MAX_KEY_BYTES = 1024
MAX_EXPIRES_S = 7 * 24 * 3600
"""The longest lifetime of a pre-signed URL (the SigV4 limit)."""

PutData = bytes | AsyncIterable[bytes] | Path
"""What :meth:`Storage.put` accepts: the whole body, a stream of chunks, or a file to upload."""


class StorageError(Exception):
    """A storage operation failed."""


class InvalidKeyError(StorageError, ValueError):
    """A key or prefix is malformed or would escape the storage root."""


class ObjectNotFoundError(StorageError, KeyError):
    """The object does not exist."""


class ObjectTooLargeError(StorageError):
    """A body is larger than the size the upload was signed for."""


class ObjectChangedError(StorageError):
    """The object is not the version expected (another ETag than sealed or asked for)."""


class ObjectSealedError(StorageError):
    """The object is sealed (its upload completed): it may not be replaced."""


class KeyConflictError(StorageError):
    """The key names a folder of other objects, or a folder of it is an object (S3 allows both, a file tree not)."""


class StorageFullError(StorageError):
    """The storage has no room left for the object (a full disk or quota): nothing was stored."""


@dataclass(frozen=True)
class PresignedRequest:
    """An HTTP request a client may make without credentials: send ``headers`` verbatim."""

    method: str
    url: str
    headers: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object (``content_type`` is ``None`` in S3 listings)."""

    key: str
    size: int
    content_type: str | None
    etag: str
    last_modified: datetime


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_key(key: str) -> str:
    """Return ``key`` unchanged, or raise :class:`InvalidKeyError` if it is not a safe key."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("key must be a non-empty string")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"key longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise InvalidKeyError(f"key must be relative: {key!r}")
    if "\\" in key:
        raise InvalidKeyError(f"key may not contain a backslash: {key!r}")
    if _CONTROL.search(key):
        raise InvalidKeyError(f"key may not contain NUL or control characters: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKeyError(f"key has an empty, '.' or '..' segment: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return a listing prefix unchanged: empty, or a key optionally ending with one ``/``."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def validate_content_type(content_type: str) -> str:
    """Return a media type unchanged, refusing empty values and control characters."""
    if not content_type or _CONTROL.search(content_type) or len(content_type) > 255:
        raise ValueError(f"invalid content type: {content_type!r}")
    return content_type


def validate_expires(expires_s: int) -> int:
    """Return a URL lifetime in seconds, refusing non-positive values and more than 7 days."""
    if not 0 < expires_s <= MAX_EXPIRES_S:
        raise ValueError(f"expires_s must be in 1..{MAX_EXPIRES_S}, got {expires_s}")
    return expires_s


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_filename(name: str, max_len: int = 200) -> str:
    """A safe single key segment from a client's file name: its base name, ``[A-Za-z0-9._-]``."""
    base = unicodedata.normalize("NFKC", name).replace("\\", "/").rsplit("/", 1)[-1]
    clean = _UNSAFE.sub("_", base).strip("._")
    if not clean:
        return "file"
    stem, dot, ext = clean.rpartition(".")
    if dot and stem and len(ext) <= 16:
        return stem[: max_len - len(ext) - 1].rstrip("._") + "." + ext
    return clean[:max_len]


def _segment(value: str, what: str) -> str:
    if "/" in value:
        raise InvalidKeyError(f"{what} may not contain '/': {value!r}")
    return validate_key(value)


def _prefix(prefix: str) -> str:
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return validate_prefix(prefix)


def upload_key(prefix: str, tenant: str, upload_id: str, filename: str) -> str:
    """``{prefix}uploads/{tenant}/{upload_id}/{filename}``, the file name sanitised."""
    return validate_key(
        f"{_prefix(prefix)}uploads/{_segment(tenant, 'tenant')}/"
        f"{_segment(upload_id, 'upload id')}/{sanitize_filename(filename)}"
    )


def results_prefix(prefix: str, tenant: str, job_id: str) -> str:
    """``{prefix}results/{tenant}/{job_id}/``: everything a job produced."""
    return f"{_prefix(prefix)}results/{_segment(tenant, 'tenant')}/{_segment(job_id, 'job id')}/"


_RESULT_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
"""A segment under a job's results: what :func:`result_key` makes (no ``.``/``..``, no ``%``)."""


def check_result_key(prefix: str, tenant: str, job_id: str, key: str) -> str:
    """``key`` if it names an object under the job's :func:`results_prefix`, else :class:`InvalidKeyError`.

    The one rule for where a job's artifacts may be: the ingest route refuses other keys, and the
    gateway signs download URLs only for keys that pass. Below the prefix every segment must be
    what :func:`result_key` writes, so ``..``, empty segments, backslashes and percent-encoded
    forms are refused rather than interpreted.
    """
    base = results_prefix(prefix, tenant, job_id)
    validate_key(key)
    rest = key[len(base) :] if key.startswith(base) else ""
    if not rest or not all(_RESULT_SEGMENT.fullmatch(segment) for segment in rest.split("/")):
        raise InvalidKeyError(f"key {key!r} is not under the results of job {job_id!r} ({base!r})")
    return key


def result_key(prefix: str, tenant: str, job_id: str, artifact: str) -> str:
    """``{prefix}results/{tenant}/{job_id}/{artifact}``; ``artifact`` may hold ``/`` sub-folders."""
    segments = artifact.replace("\\", "/").split("/")
    parts = [sanitize_filename(part) for part in segments if part not in ("", ".", "..")]
    if not parts:
        raise InvalidKeyError(f"empty artifact name: {artifact!r}")
    return validate_key(
        f"{_prefix(prefix)}results/{_segment(tenant, 'tenant')}/{_segment(job_id, 'job id')}/" + "/".join(parts)
    )


def content_disposition(filename: str) -> str:
    """An ``attachment`` Content-Disposition with an ASCII fallback and RFC 5987 ``filename*``."""
    ascii_name = sanitize_filename(filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def iter_chunks(data: PutData, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
    """``data`` as an async stream of chunks (a file is read in ``chunk_size`` pieces off the loop)."""
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
    elif isinstance(data, Path):
        handle = await asyncio.to_thread(data.open, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()
    else:
        async for chunk in data:
            yield chunk


class Storage(ABC):
    """An object store: one async interface over S3-compatible services and local files."""

    default_ttl_s: int = 3600

    @abstractmethod
    async def presign_put(
        self, key: str, content_type: str, max_size: int, expires_s: int | None = None
    ) -> PresignedRequest:
        """A pre-signed PUT binding the content type and the size (exact on S3, a cap locally)."""

    @abstractmethod
    async def presign_get(self, key: str, expires_s: int | None = None, filename: str | None = None) -> str:
        """A pre-signed GET URL; with ``filename`` the response is an attachment of that name."""

    @abstractmethod
    async def head(self, key: str) -> ObjectInfo | None:
        """The object's metadata, or ``None`` if it does not exist."""

    @abstractmethod
    def open_read(
        self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        """Stream the object in chunks; raises :class:`ObjectNotFoundError` on first iteration.

        With ``if_match``, :class:`ObjectChangedError` unless the object's ETag is that one.
        """

    @abstractmethod
    async def read_range(self, key: str, start: int, length: int, *, if_match: str | None = None) -> bytes:
        """Up to ``length`` bytes from offset ``start`` (empty past the end), e.g. magic bytes.

        With ``if_match``, :class:`ObjectChangedError` unless the object's ETag is that one.
        """

    @abstractmethod
    async def put(self, key: str, data: PutData, content_type: str) -> ObjectInfo:
        """Store an object from bytes, an async stream of chunks or a file, replacing any old one."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Delete an object; deleting a missing object is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`StorageError` unless the store is reachable and usable."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections and other resources."""

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under a non-empty ``prefix``; return how many were deleted."""
        if not validate_prefix(prefix):
            raise InvalidKeyError("refusing to delete with an empty prefix")
        keys: builtins.list[str] = [info.key async for info in self.list(prefix)]
        for key in keys:
            await self.delete(key)
        return len(keys)

    async def read_all(self, key: str) -> bytes:
        """The whole object in memory (for small objects)."""
        return b"".join([chunk async for chunk in self.open_read(key)])

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
