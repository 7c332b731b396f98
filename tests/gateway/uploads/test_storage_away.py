"""Object storage that does not answer is a 503 the client may retry, as NATS away is, not a 500.

The gateway's storage is S3 at a loopback port no one listens on: a pre-signed URL is still made (a
signature needs no request), and completing the upload, which reads the stored object, cannot."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support.gateway import Tenant


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port bound and never listened on: connections to it are refused, and no one else can
    take it while the test runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def gateway_overrides(refusing_port: int) -> dict[str, object]:
    return {
        "storage_backend": "s3",
        "storage_bucket": "gpurelay-test-away",
        "s3_endpoint_url": f"http://127.0.0.1:{refusing_port}",
        "s3_access_key_id": "test",
        "s3_secret_access_key": "test-secret",
    }


async def test_completing_an_upload_while_storage_is_away_is_a_503_to_retry(acme: Tenant) -> None:
    created = await acme.http.post("/v1/uploads", json={"filename": "a.mp4", "content_type": "video/mp4", "size": 64})
    assert created.status_code == 201, created.text
    done = await acme.http.post(f"/v1/uploads/{created.json()['id']}/complete")
    assert done.status_code == 503, done.text
    assert done.headers["content-type"] == "application/problem+json"
    assert done.headers["retry-after"] == "1"
    assert "storage" in done.json()["detail"]
    assert (await acme.http.get(f"/v1/uploads/{created.json()['id']}")).json()["status"] == "pending"
