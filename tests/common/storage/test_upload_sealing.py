"""A completed upload keeps describing its file, on the local backend and on S3 (moto), end to end:
presign over HTTP, PUT to the URL, complete, then try to replace the file with the same URL.

Locally the PUT is refused. On S3 the URL cannot be revoked: it is short-lived, and the job that
would use the replaced file is refused by the gateway, or fails with ``input_changed`` in the worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from contracts.specs.job_inputs import InputRef
from contracts.streams import KV_APIKEYS
from contracts.subjects import Namespace
from modal_workers.runtime.inputs import InputError, download_input
from services.common.auth.apikeys import ApiKeyStore
from services.common.nats.server.embedded import EmbeddedNats
from services.common.storage import LocalStorage, S3Storage, Storage
from services.gateway.app import create_app
from tests.common.storage.conftest import S3Target
from tests.support.gateway import gateway_settings
from tests.support.http import bound_socket, serve

ORIGINAL = b"\x00\x00\x00\x18ftypmp42" + b"original" * 64
REPLACED = b"\x00\x00\x00\x18ftypmp42" + b"replaced" * 64


@dataclass(frozen=True)
class UploadApi:
    """A gateway over one storage backend, and tenant acme's client."""

    backend: str
    http: httpx.AsyncClient
    storage: Storage
    app: Any


@pytest.fixture(params=["local", "s3"])
async def api(
    request: pytest.FixtureRequest, tmp_path: Path, nats_server: EmbeddedNats, namespace: Namespace, js: Any
) -> AsyncIterator[UploadApi]:
    """The gateway with local storage, or with S3 storage on moto (URLs live 120 s + 1 ms per byte)."""
    sock = bound_socket()
    options: dict[str, Any] = {"upload_url_ttl_s": 120, "upload_url_min_bytes_per_s": 1000}
    if request.param == "s3":
        target: S3Target = request.getfixturevalue("moto_target")
        options |= {
            "storage_backend": "s3",
            "storage_bucket": f"gpurelay-test-{namespace.name}",
            "s3_endpoint_url": target.endpoint_url,
            "s3_access_key_id": target.access_key_id,
            "s3_secret_access_key": target.secret_access_key,
        }
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = gateway_settings(tmp_path, url, nats_url=nats_server.url, namespace=namespace.name, **options)
    storage: Storage = LocalStorage.from_settings(settings)
    if request.param == "s3":
        storage = S3Storage.from_settings(settings)
        await storage.ensure_bucket()
    app = create_app(settings)
    with serve(app, sock):
        _, key = await ApiKeyStore(await js.key_value(namespace.bucket(KV_APIKEYS))).create("acme")
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:  # a loaded machine: seconds
            yield UploadApi(request.param, http, storage, app)
    await storage.aclose()


async def send(signed: dict[str, Any], data: bytes) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.request(signed["method"], signed["url"], headers=signed["headers"], content=data)


async def test_a_completed_upload_cannot_be_replaced_unnoticed(api: UploadApi, tmp_path: Path) -> None:
    created = await api.http.post(
        "/v1/uploads", json={"filename": "lap.mp4", "content_type": "video/mp4", "size": len(ORIGINAL)}
    )
    signed = created.json()
    assert (await send(signed, ORIGINAL)).status_code in (200, 201)
    done = await api.http.post(f"/v1/uploads/{signed['id']}/complete")
    assert done.status_code == 200, done.text
    assert done.json()["sha256"] == hashlib.sha256(ORIGINAL).hexdigest()

    again = await send(signed, REPLACED)  # the same URL, still within its lifetime
    job = await api.http.post("/v1/jobs", json={"kind": "pose", "inputs": {"video": {"upload_id": signed["id"]}}})
    ref = InputRef(upload_id=signed["id"])
    if api.backend == "local":
        assert again.status_code == 409, again.text
        assert again.headers["content-type"] == "application/problem+json"
        assert job.status_code == 201, job.text
        path = await download_input(api.storage, "", "acme", ref, tmp_path, "video")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == done.json()["sha256"]
    else:
        assert again.status_code == 200  # S3 cannot revoke a pre-signed URL ...
        assert job.status_code == 422, job.text  # ... the gateway refuses the changed input ...
        [error] = job.json()["errors"]
        assert error["loc"] == ["body", "inputs", "video", "upload_id"]
        assert "replaced" in error["msg"]
        with pytest.raises(InputError) as failed:  # ... and so does a worker given it anyway
            await download_input(api.storage, "", "acme", ref, tmp_path, "video")
        assert failed.value.code == "input_changed"


async def test_a_refused_upload_may_be_sent_again(api: UploadApi) -> None:
    body = {"filename": "lap.mp4", "content_type": "video/mp4", "size": len(ORIGINAL)}
    signed = (await api.http.post("/v1/uploads", json=body)).json()
    assert (await send(signed, b"\x89PNG\r\n\x1a\n" + ORIGINAL[8:])).status_code in (200, 201)
    refused = await api.http.post(f"/v1/uploads/{signed['id']}/complete")
    assert refused.status_code == 422, refused.text
    assert (await send(signed, ORIGINAL)).status_code in (200, 201)
    done = await api.http.post(f"/v1/uploads/{signed['id']}/complete")
    assert done.status_code == 200, done.text
    assert done.json()["sha256"] == hashlib.sha256(ORIGINAL).hexdigest()


async def test_an_upload_url_lives_minutes_sized_to_the_file(api: UploadApi) -> None:
    body = {"filename": "lap.mp4", "content_type": "video/mp4", "size": 5000}
    before = time.time()
    signed = (await api.http.post("/v1/uploads", json=body)).json()
    after = time.time()  # the gateway signs somewhere in [before, after]: a loaded machine widens it
    expected = 120 + 5  # upload_url_ttl_s + 5000 bytes at 1000 bytes/s
    expires_at = datetime.fromisoformat(signed["expires_at"]).timestamp()
    assert before + expected - 1 <= expires_at <= after + expected + 1
    query = parse_qs(urlsplit(signed["url"]).query)
    if api.backend == "s3":
        assert query["X-Amz-Expires"] == [str(expected)]
    else:
        assert before + expected - 1 <= int(query["exp"][0]) <= after + expected + 1


async def test_a_complete_refusing_bytes_another_then_completed_leaves_the_upload_sealed(api: UploadApi) -> None:
    """Complete A refuses the first bytes and, before it unseals them, the file is sent again and complete B
    accepts it. On S3 (where the URL still writes) A's unseal used to remove B's seal: the completed upload's
    file could then be replaced unnoticed. Locally A's seal holds the second PUT off until A unseals. On S3 A
    then answers B's completion: the record is what the upload is, and the bytes A refused are not its any more."""
    body = {"filename": "lap.mp4", "content_type": "video/mp4", "size": len(ORIGINAL)}
    signed = (await api.http.post("/v1/uploads", json=body)).json()
    assert (await send(signed, b"\x89PNG\r\n\x1a\n" + ORIGINAL[8:])).status_code in (200, 201)
    storage = api.app.state.gateway.storage  # the gateway's own (its loop runs in uvicorn's thread)
    delete, unsealing, go_on = storage.delete, threading.Event(), threading.Event()

    async def held_delete(key: str) -> None:
        if ".seals/" in key:  # A's unseal waits for the test
            unsealing.set()
            await asyncio.to_thread(go_on.wait, 30)
        await delete(key)

    storage.delete = held_delete
    try:
        complete_a = asyncio.create_task(api.http.post(f"/v1/uploads/{signed['id']}/complete"))
        assert await asyncio.to_thread(unsealing.wait, 30), "complete A never came to its unseal"
        resent = await send(signed, ORIGINAL)
        if api.backend == "local":
            assert resent.status_code == 409, resent.text  # A's seal holds the file
        else:
            assert resent.status_code == 200, resent.text
            complete_b = await api.http.post(f"/v1/uploads/{signed['id']}/complete")
            assert complete_b.status_code == 200, complete_b.text
            assert complete_b.json()["sha256"] == hashlib.sha256(ORIGINAL).hexdigest()
        go_on.set()
        if api.backend == "local":
            assert (await complete_a).status_code == 422
        else:
            answered_a = await complete_a
            assert (answered_a.status_code, answered_a.json()) == (200, complete_b.json())
    finally:
        go_on.set()
        storage.delete = delete
    if api.backend == "local":
        assert (await send(signed, ORIGINAL)).status_code in (200, 201)  # unsealed: sent again ...
        done = await api.http.post(f"/v1/uploads/{signed['id']}/complete")  # ... and completed
        assert done.status_code == 200, done.text
    record = (await api.http.get(f"/v1/uploads/{signed['id']}")).json()
    assert record["status"] == "completed"
    replaced = await send(signed, REPLACED)
    job = await api.http.post("/v1/jobs", json={"kind": "pose", "inputs": {"video": {"upload_id": signed["id"]}}})
    if api.backend == "local":
        assert (replaced.status_code, job.status_code) == (409, 201), (replaced.text, job.text)
    else:
        assert replaced.status_code == 200  # the URL still writes ...
        assert job.status_code == 422, job.text  # ... and the upload, still sealed, refuses the changed file
        assert "replaced" in job.json()["errors"][0]["msg"]
