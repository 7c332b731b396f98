"""The embedded backend's disk refusing an upload's bytes: full is a 507 (waiting will not help, an
operator must make room), a disk gone read-only a 503 to retry. Neither leaves a partial file behind
to use up the room, and neither is the 500 it was.

The gateway's data folder is a real tmpfs of :data:`DISK_BYTES`, so the kernel itself refuses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import Gateway, Tenant, presign
from tests.support.tmpfs import remount, small_tmpfs

DISK_BYTES = 1024 * 1024
KIB = 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """The gateway's data folder (``tmp_path / "data"``, as the ``gateway`` fixture makes it)."""
    with small_tmpfs(tmp_path / "data", DISK_BYTES) as root:
        yield root


@pytest.fixture
def gateway_overrides(small_disk: Path) -> dict[str, object]:
    """No override: asking for ``small_disk`` mounts it before the gateway makes its folders there."""
    return {}


async def _put(signed: dict[str, Any], data: bytes) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.request(signed["method"], signed["url"], headers=signed["headers"], content=data)


def _stored(gateway: Gateway) -> list[bytes]:
    objects = gateway.settings.local_storage_dir / "objects"
    return sorted(path.read_bytes() for path in objects.rglob("*") if path.is_file())


def _in_progress(gateway: Gateway) -> list[Path]:
    return list((gateway.settings.local_storage_dir / "tmp").iterdir())


async def test_an_upload_the_disk_has_no_room_for_is_a_507_and_gives_its_room_back(
    acme: Tenant, gateway: Gateway
) -> None:
    first, too_big, after = os.urandom(512 * KIB), os.urandom(768 * KIB), os.urandom(384 * KIB)
    assert (await _put(await presign(acme, len(first)), first)).status_code == 201

    refused = await _put(await presign(acme, len(too_big)), too_big)
    assert refused.status_code == 507, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "no room" in refused.json()["detail"]
    assert str(gateway.settings.data_dir) not in refused.text  # no server path on the page
    assert _in_progress(gateway) == []  # the partial file is gone ...

    # ... so its room is free again: this one fits only if none of the refused bytes stayed.
    assert (await _put(await presign(acme, len(after)), after)).status_code == 201
    assert _stored(gateway) == sorted([first, after])


async def test_an_upload_to_a_disk_gone_read_only_is_a_503_to_retry(
    acme: Tenant, gateway: Gateway, small_disk: Path
) -> None:
    data = os.urandom(64 * KIB)
    signed = await presign(acme, len(data))
    remount(small_disk, read_only=True)
    try:
        refused = await _put(signed, data)
    finally:
        remount(small_disk, read_only=False)
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"

    retried = await _put(signed, data)  # the same signed URL, once the disk takes writes again
    assert retried.status_code == 201, retried.text
    assert _stored(gateway) == [data]
    assert _in_progress(gateway) == []
