"""The embedded storage backend: files under the data directory, URLs signed with HMAC.

Layout under the root: ``objects/{key}`` (the bytes), ``meta/{h[:2]}/{h}.json`` with ``h`` the
SHA-256 of the key (content type, etag) and ``tmp/`` (uploads in progress, renamed into place when
complete, so a reader never sees a partial object). Object paths are resolved, symlinks included,
and must stay under ``objects/``. A key cannot be both an object and a "folder" of other objects
here (S3 allows it); such a put fails with :class:`KeyConflictError`. A sealed key
(:mod:`~services.common.storage.seals`) is never replaced: the check and the rename that would
replace it hold one lock, so a seal and a write cannot cross.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import hashlib
import json
import os
import threading
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
from services.common.storage.errors import (
    InvalidKeyError,
    KeyConflictError,
    ObjectChangedError,
    ObjectNotFoundError,
    ObjectSealedError,
    ObjectTooLargeError,
    StorageError,
    StorageFullError,
)
from services.common.storage.keys import validate_key, validate_prefix
from services.common.storage.seals import seal_key_of

_WRITE_BUFFER = 1024 * 1024
_T = TypeVar("_T")


class LocalStorage(Storage):
    """Objects as files under ``root``; signed URLs served by the gateway's blob routes."""

    def __init__(
        self,
        root: Path,
        base_url: str,
        secret: SecretStr | bytes,
        *,
        default_ttl_s: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root).resolve()
        self.objects = self.root / "objects"
        self.meta = self.root / "meta"
        self.tmp = self.root / "tmp"
        for folder in (self.objects, self.meta, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        self.base_url = base_url.rstrip("/")
        self._secret = secret.get_secret_value().encode() if isinstance(secret, SecretStr) else secret
        self.default_ttl_s = validate_expires(default_ttl_s)
        self.clock = clock
        self._commits = threading.Lock()

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

    @staticmethod
    def _inside(tree: Path, relative: str) -> Path:
        resolved = (tree / relative).resolve()
        if not resolved.is_relative_to(tree) or resolved == tree:
            raise InvalidKeyError(f"key escapes the storage root: {relative!r}")
        return resolved

    def object_path(self, key: str) -> Path:
        """The file holding ``key``, checked to stay under the objects tree."""
        return self._inside(self.objects, validate_key(key))

    def _meta_path(self, key: str) -> Path:
        digest = hashlib.sha256(validate_key(key).encode("utf-8", "surrogatepass")).hexdigest()
        return self.meta / digest[:2] / f"{digest}.json"

    def _expiry(self, key: str, expires_s: int | None) -> int:
        self.object_path(key)
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

    def _info(self, key: str, stat: os.stat_result) -> ObjectInfo:
        meta: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads(self._meta_path(key).read_text())
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            content_type=meta.get("content_type", "application/octet-stream"),
            etag=meta.get("etag") or f"{stat.st_mtime_ns:x}-{stat.st_size:x}",
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
        )

    def _head(self, key: str) -> ObjectInfo | None:
        path = self.object_path(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self._info(key, stat) if path.is_file() else None

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's size, content type, etag and modification time, or ``None``."""
        return await _off_disk(key, self._head, key)

    def _open(self, key: str) -> tuple[BinaryIO, ObjectInfo]:
        path = self.object_path(key)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFoundError(key) from None
        return handle, self._info(key, os.fstat(handle.fileno()))

    async def open_file(self, key: str) -> tuple[BinaryIO, ObjectInfo]:
        """An open handle and the metadata of that very file (immune to a concurrent replace)."""
        return await _off_disk(key, self._open, key)

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
        for info in await _off_disk(prefix, self._list, validate_prefix(prefix)):
            yield info

    def _list(self, prefix: str) -> builtins.list[ObjectInfo]:
        start = self.objects / prefix.rpartition("/")[0]
        found: builtins.list[ObjectInfo] = []
        for folder, _dirs, files in os.walk(start):
            for name in files:
                key = (Path(folder) / name).relative_to(self.objects).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    info = self._head(key)
                except InvalidKeyError:
                    continue
                if info is not None:
                    found.append(info)
        return sorted(found, key=lambda info: info.key.encode())

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
        dest, meta = self.object_path(key), self._meta_path(key)
        sealed = self.object_path(seal) if (seal := seal_key_of(key)) else None
        tmp = self.tmp / f"{uuid.uuid4().hex}.part"
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
            await _on_disk(key, self._finish, handle, bytes(buffer))
            record = {"content_type": content_type, "etag": md5.hexdigest()}
            await _on_disk(key, self._commit, tmp, dest, meta, record, sealed)
        except BaseException:
            with contextlib.suppress(OSError):  # a full disk refuses the close's flush too
                handle.close()
            tmp.unlink(missing_ok=True)
            raise
        info = await self.head(key)
        if info is None:
            raise StorageError(f"object vanished right after it was written: {key}")
        return info

    @staticmethod
    def _finish(handle: BinaryIO, tail: bytes) -> None:
        handle.write(tail)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()

    def _commit(self, tmp: Path, dest: Path, meta: Path, record: dict[str, str], sealed: Path | None) -> None:
        meta_tmp = self.tmp / f"{uuid.uuid4().hex}.json"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            meta.parent.mkdir(parents=True, exist_ok=True)
            meta_tmp.write_text(json.dumps(record))
            with self._commits:
                if sealed is not None and sealed.is_file():
                    raise ObjectSealedError(f"the object is sealed (its upload completed): {dest.name}")
                os.replace(meta_tmp, meta)
                os.replace(tmp, dest)
        except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
            key = dest.relative_to(self.objects).as_posix()  # the key, not the server's path
            raise KeyConflictError(f"key conflicts with an existing object or folder: {key}") from exc
        finally:
            meta_tmp.unlink(missing_ok=True)

    async def delete(self, key: str) -> None:
        """Remove the object and its metadata, then any folders left empty."""
        await _on_disk(key, self._delete, key)

    def _delete(self, key: str) -> None:
        path = self.object_path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        self._meta_path(key).unlink(missing_ok=True)
        self._prune(path)
        if (seal := seal_key_of(key)) is not None:
            self._delete(seal)  # a seal goes with its object

    def _prune(self, path: Path) -> None:
        """Remove the folders of ``path`` left empty, up to the objects tree."""
        for parent in path.parents:
            if parent == self.objects or not parent.is_relative_to(self.objects):
                break
            try:
                parent.rmdir()
            except OSError:
                break

    async def ping(self) -> None:
        """Check that the root is a writable folder."""
        folders = (self.objects, self.meta, self.tmp)
        if not await asyncio.to_thread(lambda: all(os.access(p, os.W_OK | os.X_OK) for p in folders)):
            raise StorageError(f"storage root is not a writable folder: {self.root}")

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
