"""The embedded backend's disk failing a read (EIO) is a :class:`StorageError` (the gateway's 503 to
retry), not a bare ``OSError`` that a route turned into a 500. The object's file is a real one whose
reads fail in the kernel (:func:`~tests.support.tmpfs.unreadable_file`, root only)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.common.storage import StorageError
from services.common.storage.local import LocalStorage
from tests.support.tmpfs import unreadable_file

pytestmark = pytest.mark.timeout(60)
KEY = "t/acme/uploads/upl_1/lap.mp4"


@pytest.fixture
async def storage(tmp_path: Path) -> LocalStorage:
    store = LocalStorage(tmp_path / "data", "http://127.0.0.1:9", b"read-errors-secret-0123456789abcdef")
    await store.put(KEY, b"\x00\x00\x00\x18ftypmp42" + bytes(1000), "video/mp4")
    return store


async def test_a_read_the_disk_fails_is_a_storage_error_naming_the_key(storage: LocalStorage) -> None:
    assert (await storage.read_range(KEY, 0, 8))[4:8] == b"ftyp"  # readable before
    with unreadable_file(storage.files.object_path(KEY)):
        with pytest.raises(StorageError, match=f"could not read {re.escape(KEY)}") as raised:
            await storage.read_range(KEY, 0, 8)
        assert type(raised.value) is StorageError  # the plain one: the 503, not a missing object's 404
        assert str(storage.files.root) not in str(raised.value)  # no server path in what a client may see
        with pytest.raises(StorageError, match="could not read"):
            async for _ in storage.open_read(KEY):
                pass
    assert (await storage.read_range(KEY, 0, 8))[4:8] == b"ftyp"  # and readable again after
