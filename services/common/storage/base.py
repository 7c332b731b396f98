"""The storage interface every backend implements, its value types and the checks on its arguments.

Keys and their layout live in :mod:`~services.common.storage.keys`, the errors in
:mod:`~services.common.storage.errors`. :func:`iter_chunks` turns any :data:`PutData` into the stream
a backend writes.
"""

from __future__ import annotations

import asyncio
import builtins
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from services.common.storage.errors import InvalidKeyError
from services.common.storage.keys import CONTROL_CHARACTERS, validate_prefix

DEFAULT_CHUNK_SIZE = 1024 * 1024
MAX_EXPIRES_S = 7 * 24 * 3600
"""The longest lifetime of a pre-signed URL (the SigV4 limit)."""

PutData = bytes | AsyncIterable[bytes] | Path
"""What :meth:`Storage.put` accepts: the whole body, a stream of chunks, or a file to upload."""


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


def validate_content_type(content_type: str) -> str:
    """Return a media type unchanged, refusing empty values and control characters."""
    if not content_type or CONTROL_CHARACTERS.search(content_type) or len(content_type) > 255:
        raise ValueError(f"invalid content type: {content_type!r}")
    return content_type


def validate_expires(expires_s: int) -> int:
    """Return a URL lifetime in seconds, refusing non-positive values and more than 7 days."""
    if not 0 < expires_s <= MAX_EXPIRES_S:
        raise ValueError(f"expires_s must be in 1..{MAX_EXPIRES_S}, got {expires_s}")
    return expires_s


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
