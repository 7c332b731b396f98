"""The local backend's files: where an object and its metadata lie, and the blocking steps on them.

Layout under the root: ``objects/{key}`` (the bytes), ``meta/{h[:2]}/{h}.json`` with ``h`` the
SHA-256 of the key (content type, etag) and ``tmp/`` (uploads in progress, renamed into place when
complete, so a reader never sees a partial object). Object paths are resolved, symlinks included,
and must stay under ``objects/``. A key cannot be both an object and a "folder" of other objects
here (S3 allows it); such a commit fails with :class:`KeyConflictError`. A sealed key
(:mod:`~services.common.storage.seals`) is never replaced: the check and the rename that would
replace it hold one lock, so a seal and a write cannot cross. Each step blocks; the backend,
:class:`~services.common.storage.local.LocalStorage`, runs it in a thread.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from services.common.storage.base import ObjectInfo
from services.common.storage.errors import InvalidKeyError, KeyConflictError, ObjectNotFoundError, ObjectSealedError
from services.common.storage.keys import validate_key
from services.common.storage.seals import seal_key_of


class ObjectFiles:
    """Objects as files under ``root``, in its ``objects``, ``meta`` and ``tmp`` folders (made if missing)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.objects = self.root / "objects"
        self.meta = self.root / "meta"
        self.tmp = self.root / "tmp"
        for folder in (self.objects, self.meta, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        self._commits = threading.Lock()

    @staticmethod
    def _inside(tree: Path, relative: str) -> Path:
        resolved = (tree / relative).resolve()
        if not resolved.is_relative_to(tree) or resolved == tree:
            raise InvalidKeyError(f"key escapes the storage root: {relative!r}")
        return resolved

    def object_path(self, key: str) -> Path:
        """The file holding ``key``, checked to stay under the objects tree."""
        return self._inside(self.objects, validate_key(key))

    def meta_path(self, key: str) -> Path:
        """The file holding ``key``'s content type and etag."""
        digest = hashlib.sha256(validate_key(key).encode("utf-8", "surrogatepass")).hexdigest()
        return self.meta / digest[:2] / f"{digest}.json"

    def _info(self, key: str, stat: os.stat_result) -> ObjectInfo:
        meta: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads(self.meta_path(key).read_text())
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            content_type=meta.get("content_type", "application/octet-stream"),
            etag=meta.get("etag") or f"{stat.st_mtime_ns:x}-{stat.st_size:x}",
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
        )

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, content type, etag and modification time, or ``None``."""
        path = self.object_path(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self._info(key, stat) if path.is_file() else None

    def open(self, key: str) -> tuple[BinaryIO, ObjectInfo]:
        """An open handle and the metadata of that very file; :class:`ObjectNotFoundError` when missing."""
        path = self.object_path(key)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFoundError(key) from None
        return handle, self._info(key, os.fstat(handle.fileno()))

    def list(self, prefix: str) -> builtins.list[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key (UTF-8 byte) order."""
        start = self.objects / prefix.rpartition("/")[0]
        found: builtins.list[ObjectInfo] = []
        for folder, _dirs, files in os.walk(start):
            for name in files:
                key = (Path(folder) / name).relative_to(self.objects).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    info = self.head(key)
                except InvalidKeyError:
                    continue
                if info is not None:
                    found.append(info)
        return sorted(found, key=lambda info: info.key.encode())

    @staticmethod
    def finish(handle: BinaryIO, tail: bytes) -> None:
        """Write ``tail``, then flush, sync and close the file."""
        handle.write(tail)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()

    def commit(self, tmp: Path, dest: Path, meta: Path, record: dict[str, str], sealed: Path | None) -> None:
        """Rename the finished ``tmp`` to ``dest`` and ``record`` to ``meta``, unless ``sealed`` exists."""
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

    def delete(self, key: str) -> None:
        """Remove the object, its metadata and its seal, then any folders left empty."""
        path = self.object_path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        self.meta_path(key).unlink(missing_ok=True)
        self._prune(path)
        if (seal := seal_key_of(key)) is not None:
            self.delete(seal)  # a seal goes with its object

    def _prune(self, path: Path) -> None:
        """Remove the folders of ``path`` left empty, up to the objects tree."""
        for parent in path.parents:
            if parent == self.objects or not parent.is_relative_to(self.objects):
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def writable(self) -> bool:
        """Whether the objects, meta and tmp folders are writable."""
        return all(os.access(p, os.W_OK | os.X_OK) for p in (self.objects, self.meta, self.tmp))
