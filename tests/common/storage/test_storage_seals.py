"""Sealing a completed upload, on every backend: what it freezes, and how a change is caught at use.

A pre-signed PUT cannot be revoked on S3, so there a re-upload after the seal succeeds and is
caught when the object is next used; the local backend refuses it outright.
"""

from __future__ import annotations

import httpx
import pytest

from services.common.storage import (
    LocalStorage,
    ObjectChangedError,
    ObjectNotFoundError,
    ObjectSealedError,
    Storage,
    check_sealed,
    seal,
    unseal,
)

KEY = "uploads/acme/upl_1/lap.mp4"
V1 = b"\x00\x00\x00\x18ftypmp42" + b"1" * 100
V2 = b"\x00\x00\x00\x18ftypmp42" + b"2" * 100


async def presigned_put(storage: Storage, data: bytes) -> httpx.Response:
    request = await storage.presign_put(KEY, "video/mp4", len(data))
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.put(request.url, content=data, headers=request.headers)


async def test_a_re_upload_after_the_seal_is_refused_or_caught(storage: Storage) -> None:
    assert (await presigned_put(storage, V1)).status_code in (200, 201)
    sealed = await seal(storage, KEY)
    assert sealed.size == len(V1)
    assert (await check_sealed(storage, KEY)).etag == sealed.etag

    again = await presigned_put(storage, V2)  # the same URL's grant, different bytes of the same size
    if isinstance(storage, LocalStorage):
        assert again.status_code == 409, again.text
        assert again.headers["content-type"] == "application/problem+json"
        assert await storage.read_all(KEY) == V1
        assert (await check_sealed(storage, KEY)).etag == sealed.etag
        with pytest.raises(ObjectSealedError):
            await storage.put(KEY, V2, "video/mp4")
    else:  # S3 cannot revoke the URL: the change is caught at use
        assert again.status_code == 200
        with pytest.raises(ObjectChangedError):
            await check_sealed(storage, KEY)


async def test_reads_pinned_to_an_etag_refuse_another_version(storage: Storage) -> None:
    first = await storage.put(KEY, V1, "video/mp4")
    assert await storage.read_range(KEY, 0, 8, if_match=first.etag) == V1[:8]
    second = await storage.put(KEY, V2, "video/mp4")
    with pytest.raises(ObjectChangedError):
        await storage.read_range(KEY, 0, 8, if_match=first.etag)
    with pytest.raises(ObjectChangedError):
        async for _ in storage.open_read(KEY, if_match=first.etag):
            pass
    assert b"".join([chunk async for chunk in storage.open_read(KEY, if_match=second.etag)]) == V2


async def test_unsealing_lets_the_object_be_replaced(storage: Storage) -> None:
    await storage.put(KEY, V1, "video/mp4")
    await seal(storage, KEY)
    await unseal(storage, KEY)
    replaced = await storage.put(KEY, V2, "video/mp4")
    assert (await check_sealed(storage, KEY)).etag == replaced.etag  # no seal: nothing to compare
    assert [info.key async for info in storage.list("uploads/acme/upl_1/")] == [KEY]


async def test_a_seal_lives_outside_the_uploads_listing_and_goes_with_the_object(storage: Storage) -> None:
    await storage.put(KEY, V1, "video/mp4")
    await seal(storage, KEY)
    assert [info.key async for info in storage.list("uploads/acme/upl_1/")] == [KEY]
    await storage.delete(KEY)
    assert [info.key async for info in storage.list("uploads/")] == []
    with pytest.raises(ObjectNotFoundError):
        await seal(storage, KEY)
    with pytest.raises(ObjectNotFoundError):
        await check_sealed(storage, KEY)


async def test_a_key_too_long_to_have_a_seal_still_writes_and_deletes(storage: Storage) -> None:
    key = "r/" + "/".join(["k" * 200] * 4 + ["k" * 210])  # 1,016 bytes: a seal key would pass 1,024
    assert len(key) == 1016
    await storage.put(key, b"x", "text/plain")
    assert await storage.read_all(key) == b"x"
    await storage.delete(key)
    assert await storage.head(key) is None
