"""Uploads over real HTTP: presign, PUT to the signed URL, complete, and what reaches JetStream."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from nats.js import JetStreamContext

from contracts.api.uploads import UploadRecord, UploadStatus
from contracts.ids import tenant_key
from contracts.streams import KV_UPLOADS
from contracts.subjects import Namespace, Subjects
from services.gateway.uploads import magic
from tests.support.gateway import Tenant, presign, put, stored, uploaded

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real MP4 (mp4v) of 20 frames, 64x48, written by OpenCV."""
    path = tmp_path_factory.mktemp("video") / "lap.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(20):
        writer.write(np.full((48, 64, 3), i * 12, dtype=np.uint8))
    writer.release()
    return Path(path).read_bytes()


def png() -> bytes:
    ok, encoded = cv2.imencode(".png", np.zeros((8, 8, 3), dtype=np.uint8))
    assert ok
    return bytes(encoded.tobytes())


async def test_video_upload_flow(
    acme: Tenant, video: bytes, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    signed = await presign(acme, len(video))
    upload_id = signed["id"]
    assert signed["method"] == "PUT"
    assert signed["headers"] == {"Content-Type": "video/mp4"}
    pending = (await acme.http.get(f"/v1/uploads/{upload_id}")).json()
    assert pending["status"] == "pending"
    assert pending["completed_at"] is None
    await put(signed, video)
    subject = subjects.upload_completed("acme", upload_id)
    assert await stored(js, namespace, subject) == []

    done = await acme.http.post(f"/v1/uploads/{upload_id}/complete")
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "completed"
    assert body["size"] == len(video)
    assert body["sha256"] == hashlib.sha256(video).hexdigest()
    assert (await acme.http.get(f"/v1/uploads/{upload_id}")).json() == body

    [event] = await stored(js, namespace, subject)
    assert (event.type, event.source, event.tenant, event.subject) == (
        "upload.completed",
        "gateway",
        "acme",
        upload_id,
    )
    assert event.id == f"upload-completed-{upload_id}"
    assert event.data["size"] == len(video)
    assert event.data["key"].endswith(f"/{upload_id}/lap.mp4")

    again = await acme.http.post(f"/v1/uploads/{upload_id}/complete")
    assert (again.status_code, again.json()) == (200, body)
    assert len(await stored(js, namespace, subject)) == 1


async def test_concurrent_completes_publish_once(
    acme: Tenant, video: bytes, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    upload_id = await uploaded(acme, video)
    responses = await asyncio.gather(*(acme.http.post(f"/v1/uploads/{upload_id}/complete") for _ in range(4)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["completed_at"] for r in responses}) == 1
    assert len(await stored(js, namespace, subjects.upload_completed("acme", upload_id))) == 1


async def test_complete_publishes_an_event_missing_after_a_crash(
    acme: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    """A record marked completed whose event never reached the stream: completing again repairs it."""
    upload_id = (await presign(acme, 10))["id"]
    kv = await js.key_value(namespace.bucket(KV_UPLOADS))
    entry = await kv.get(tenant_key("acme", upload_id))
    record = UploadRecord.model_validate_json(entry.value or b"")
    done = record.model_copy(update={"status": UploadStatus.COMPLETED, "completed_at": datetime.now(UTC)})
    await kv.put(tenant_key("acme", upload_id), done.model_dump_json().encode())
    for _ in range(2):
        assert (await acme.http.post(f"/v1/uploads/{upload_id}/complete")).status_code == 200
    assert len(await stored(js, namespace, subjects.upload_completed("acme", upload_id))) == 1


async def test_png_declared_as_mp4_is_refused_and_nothing_published(
    acme: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    upload_id = await uploaded(acme, png())
    response = await acme.http.post(f"/v1/uploads/{upload_id}/complete")
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    [error] = response.json()["errors"]
    assert error["loc"] == ["content_type"]
    assert "image/png" in error["msg"]
    assert (await acme.http.get(f"/v1/uploads/{upload_id}")).json()["status"] == "pending"
    assert await stored(js, namespace, subjects.upload_completed("acme", upload_id)) == []


async def test_size_mismatch_is_refused(acme: Tenant, video: bytes) -> None:
    upload_id = await uploaded(acme, video, size=len(video) + 100)  # locally the size is a cap
    response = await acme.http.post(f"/v1/uploads/{upload_id}/complete")
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["size"]


async def test_complete_before_put_is_a_conflict(acme: Tenant) -> None:
    signed = await presign(acme, 1000)
    response = await acme.http.post(f"/v1/uploads/{signed['id']}/complete")
    assert response.status_code == 409
    assert "PUT" in response.json()["detail"]


async def test_zip_upload_completes(acme: Tenant) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", png())
    upload_id = await uploaded(acme, buffer.getvalue(), "application/zip")
    assert (await acme.http.post(f"/v1/uploads/{upload_id}/complete")).json()["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"size": 2 * 1024**3 + 1}, ["body", "size"]),
        ({"content_type": "text/html"}, ["body", "content_type"]),
        ({"size": 0}, ["body", "size"]),
        ({"filename": "../etc/passwd"}, ["body", "filename"]),
        ({"extra": 1}, ["body", "extra"]),
    ],
)
async def test_presign_refuses_bad_declarations(acme: Tenant, body: dict[str, Any], loc: list[str]) -> None:
    declared = {"filename": "a.mp4", "content_type": "video/mp4", "size": 10, **body}
    response = await acme.http.post("/v1/uploads", json=declared)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert loc in [error["loc"] for error in response.json()["errors"]]


async def test_other_tenants_uploads_are_not_found(acme: Tenant, globex: Tenant) -> None:
    upload_id = (await presign(acme, 10))["id"]
    for bad in (upload_id, "upl_missing", "a.b"):
        assert (await globex.http.get(f"/v1/uploads/{bad}")).status_code == 404
        assert (await globex.http.post(f"/v1/uploads/{bad}/complete")).status_code == 404
    assert (await acme.http.get(f"/v1/uploads/{upload_id}")).status_code == 200


async def test_missing_key_is_unauthorized(anonymous: httpx.AsyncClient) -> None:
    body = {"filename": "a.mp4", "content_type": "video/mp4", "size": 10}
    for response in (
        await anonymous.post("/v1/uploads", json=body),
        await anonymous.get("/v1/uploads/upl_x"),
        await anonymous.post("/v1/uploads/upl_x/complete"),
    ):
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("head", "found"),
    [
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video/quicktime"),
        (b"\x00\x00\x00\x08wide\x00\x00\x00\x00", "video/quicktime"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x82\x84webm", "video/webm"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x82\x88matroska", "video/x-matroska"),
        (b"RIFF\x00\x10\x00\x00AVI LIST", "video/x-msvideo"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (b"PK\x05\x06\x00\x00", "application/zip"),
        (b"GIF89a\x01\x00", None),
        (b"", None),
    ],
)
def test_sniff(head: bytes, found: str | None) -> None:
    assert magic.sniff(head) == found


def test_families_accept_either_name() -> None:
    mp4, mov = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00"
    assert magic.matches("video/quicktime", mp4)
    assert magic.matches("video/mp4", mov)
    assert magic.matches("video/webm", b"\x1a\x45\xdf\xa3\x9f\x42\x82\x88matroska")
    assert not magic.matches("video/mp4", b"\x89PNG\r\n\x1a\n")
    assert not magic.matches("text/plain", mp4)


async def test_a_jobs_created_event_carries_the_sizes_of_its_complete_uploads(
    acme: Tenant, video: bytes, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    """So the dispatcher queues it without reading them again; a pending upload is left out (the
    dispatcher waits for it)."""
    done, waiting = await presign(acme, len(video)), await presign(acme, len(video))
    await put(done, video)
    assert (await acme.http.post(f"/v1/uploads/{done['id']}/complete")).status_code == 200
    inputs = {"video": {"upload_id": done["id"]}, "reference": {"upload_id": waiting["id"]}}
    job = await acme.http.post("/v1/jobs", json={"kind": "lap_compare", "inputs": inputs})
    assert job.status_code == 201, job.text
    [created] = await stored(js, namespace, subjects.job_event("acme", job.json()["id"], "created"))
    assert created.data["upload_sizes"] == {done["id"]: len(video)}
