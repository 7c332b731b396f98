"""The embedded storage backend: files under the data directory, URLs signed with HMAC.

:class:`~services.common.storage.local_files.ObjectFiles` lays the files out and holds the blocking
steps that read, commit and remove them; this backend runs those steps in a thread, streams a write
into a temporary file first, and signs the URLs the gateway's blob routes serve
(:mod:`~services.common.storage.signing`). A file system failing a step reads as a
:class:`StorageError` (:class:`StorageFullError` when full), never as a bare ``OSError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TypeVar

from pydantic import SecretStr

from services.common.config import BaseServiceSettings
from services.common.storage import signing
from services.common.storage.base import (
    DEFAULT_CHUNK_SIZE,
    ObjectInfo,
    PresignedRequest,
    PutData,
    Storage,
    iter_chunks,
    validate_content_type,
    validate_expires,
)
from services.common.storage.errors import ObjectChangedError, ObjectTooLargeError, StorageError, StorageFullError
from services.common.storage.keys import validate_prefix
from services.common.storage.local_files import ObjectFiles
from services.common.storage.seals import seal_key_of

_WRITE_BUFFER = 1024 * 1024
_T = TypeVar("_T")


class LocalStorage(Storage):
    """Objects as files under ``root`` (:attr:`files`); signed URLs served by the gateway's blob routes."""

    def __init__(
        self,
        root: Path,
        base_url: str,
        secret: SecretStr | bytes,
        *,
        default_ttl_s: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.files = ObjectFiles(root)
        self.base_url = base_url.rstrip("/")
        self._secret = secret.get_secret_value().encode() if isinstance(secret, SecretStr) else secret
        self.default_ttl_s = validate_expires(default_ttl_s)
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: BaseServiceSettings, *, clock: Callable[[], float] = time.time) -> LocalStorage:
        """A backend under ``settings.local_storage_dir`` signing URLs for ``settings.url``."""
        return cls(
            settings.local_storage_dir,
            settings.url,
            settings.signing_secret,
            default_ttl_s=settings.signed_url_ttl_s,
            clock=clock,
        )

    def _expiry(self, key: str, expires_s: int | None) -> int:
        self.files.object_path(key)
        return int(self.clock()) + validate_expires(self.default_ttl_s if expires_s is None else expires_s)

    async def presign_put(
        self, key: str, content_type: str, max_size: int, expires_s: int | None = None
    ) -> PresignedRequest:
        """A signed PUT URL; the gateway refuses another content type or more than ``max_size``."""
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        expires_at = self._expiry(key, expires_s)
        grant = signing.Grant("put", key, expires_at, validate_content_type(content_type), max_size)
        return PresignedRequest(
            method="PUT",
            url=signing.signed_url(self.base_url, self._secret, grant),
            headers={"Content-Type": content_type},
            expires_at=datetime.fromtimestamp(grant.expires_at, UTC),
        )

    async def presign_get(self, key: str, expires_s: int | None = None, filename: str | None = None) -> str:
        """A signed GET URL served by the gateway."""
        grant = signing.Grant("get", key, self._expiry(key, expires_s), filename=filename)
        return signing.signed_url(self.base_url, self._secret, grant)

    def verify(self, op: signing.Op, key: str, query: Mapping[str, str]) -> signing.Grant:
        """Check a signed URL's query for ``op`` on ``key`` (raises :class:`signing.SignatureError`)."""
        return signing.verify(self._secret, op, key, query, now=self.clock())

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's size, content type, etag and modification time, or ``None``."""
        return await _off_disk(key, self.files.head, key)

    async def open_file(self, key: str) -> tuple[BinaryIO, ObjectInfo]:
        """An open handle and the metadata of that very file (immune to a concurrent replace)."""
        return await _off_disk(key, self.files.open, key)

    async def _open_matching(self, key: str, if_match: str | None) -> BinaryIO:
        handle, info = await self.open_file(key)
        if if_match is not None and info.etag != if_match:
            handle.close()
            raise ObjectChangedError(key)
        return handle

    async def open_read(
        self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        """Stream the file in chunks of at most ``chunk_size`` bytes."""
        handle = await self._open_matching(key, if_match)
        try:
            while chunk := await _off_disk(key, handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def read_range(self, key: str, start: int, length: int, *, if_match: str | None = None) -> bytes:
        """Up to ``length`` bytes from ``start``."""
        if start < 0 or length < 0:
            raise ValueError("start and length must be >= 0")
        handle = await self._open_matching(key, if_match)
        try:
            await _off_disk(key, handle.seek, start)
            return await _off_disk(key, handle.read, length)
        finally:
            handle.close()

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key (UTF-8 byte) order."""
        for info in await _off_disk(prefix, self.files.list, validate_prefix(prefix)):
            yield info

    async def put(self, key: str, data: PutData, content_type: str) -> ObjectInfo:
        """Store ``data`` atomically."""
        return await self.write(key, iter_chunks(data), content_type)

    async def write(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str, *, max_size: int | None = None
    ) -> ObjectInfo:
        """Stream ``chunks`` to a temporary file, then rename it into place.

        Raises :class:`ObjectTooLargeError` as soon as more than ``max_size`` bytes arrive,
        :class:`ObjectSealedError` when ``key`` is sealed, :class:`StorageFullError` when the disk has
        no room and :class:`StorageError` when it refuses the write otherwise; the temporary file is
        removed and any existing object is left untouched.
        """
        validate_content_type(content_type)
        files = self.files
        dest, meta = files.object_path(key), files.meta_path(key)
        sealed = files.object_path(seal) if (seal := seal_key_of(key)) else None
        tmp = files.tmp / f"{uuid.uuid4().hex}.part"
        handle = await _on_disk(key, tmp.open, "xb")
        try:
            md5, size, buffer = hashlib.md5(usedforsecurity=False), 0, bytearray()
            async for chunk in chunks:
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise ObjectTooLargeError(f"body exceeds {max_size} bytes")
                md5.update(chunk)
                buffer += chunk
                if len(buffer) >= _WRITE_BUFFER:
                    await _on_disk(key, handle.write, bytes(buffer))
                    buffer.clear()
            await _on_disk(key, files.finish, handle, bytes(buffer))
            record = {"content_type": content_type, "etag": md5.hexdigest()}
            await _on_disk(key, files.commit, tmp, dest, meta, record, sealed)
        except BaseException:
            with contextlib.suppress(OSError):  # a full disk refuses the close's flush too
                handle.close()
            tmp.unlink(missing_ok=True)
            raise
        info = await self.head(key)
        if info is None:
            raise StorageError(f"object vanished right after it was written: {key}")
        return info

    async def delete(self, key: str) -> None:
        """Remove the object and its metadata, then any folders left empty."""
        await _on_disk(key, self.files.delete, key)

    async def ping(self) -> None:
        """Check that the root is a writable folder."""
        if not await asyncio.to_thread(self.files.writable):
            raise StorageError(f"storage root is not a writable folder: {self.files.root}")

    async def aclose(self) -> None:
        """Nothing to release."""


async def _on_disk(key: str, operation: Callable[..., _T], *args: object) -> _T:
    """``operation``, a step of writing ``key``, in a thread. The file system refusing it is a
    :class:`StorageFullError` (no room: the client can only wait for an operator) or a
    :class:`StorageError` (read-only, an I/O error: the storage is away), never a bare ``OSError`` a
    caller could take for its client's connection failing."""
    try:
        return await asyncio.to_thread(operation, *args)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFullError(f"no space left on the storage for {key}") from exc
        raise StorageError(f"the storage refused the write of {key}: {exc.strerror or exc}") from exc


async def _off_disk(key: str, operation: Callable[..., _T], *args: object) -> _T:
    """``operation``, a step of reading ``key``, in a thread. The file system failing it (an I/O error,
    a disk gone) is a :class:`StorageError`, so the client is told to retry (a 503), not a 500; a
    missing object is the operation's own :class:`ObjectNotFoundError` (or ``None``)."""
    try:
        return await asyncio.to_thread(operation, *args)
    except OSError as exc:
        raise StorageError(f"the storage could not read {key}: {exc.strerror or exc}") from exc
