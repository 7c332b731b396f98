"""Storage fixtures: the contract suite runs on every backend.

- ``local``: a :class:`LocalStorage` whose signed URLs are served by a real uvicorn running the
  gateway app (``create_app``) on a free loopback port, in a background thread;
- ``s3``: moto's S3 server on a free loopback port, one bucket per test (moto does not verify
  pre-signed signatures, so tests of signed-header enforcement skip it);
- ``minio``: a MinIO container via testcontainers, when a Docker engine answers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aioboto3
import pytest
from moto.server import ThreadedMotoServer

from services.common.storage import LocalStorage, S3Storage, Storage
from services.common.storage.s3_uploads import MIN_PART_SIZE
from tests.support.gateway import Gateway


@dataclass(frozen=True)
class S3Target:
    """Where an S3-compatible server listens and how to sign in."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    verifies_signatures: bool


@pytest.fixture
async def local_storage(gateway: Gateway) -> AsyncIterator[LocalStorage]:
    """A local backend sharing the served gateway's data dir and secret."""
    async with LocalStorage.from_settings(gateway.settings) as storage:
        yield storage


@pytest.fixture(scope="session")
def moto_target() -> Iterator[S3Target]:
    """moto's S3 server on a free loopback port for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Target(f"http://{host}:{port}", "testing", "testing", verifies_signatures=False)
    finally:
        server.stop()


def _docker_unavailable() -> str | None:
    """Why no Docker engine answers, or ``None`` when one does."""
    from testcontainers.core.config import testcontainers_config

    sockets = [Path("/var/run/docker.sock"), Path.home() / ".docker/run/docker.sock"]
    if runtime_dir := os.environ.get("XDG_RUNTIME_DIR"):
        sockets.append(Path(runtime_dir) / "docker.sock")
    configured = os.environ.get("DOCKER_HOST") or testcontainers_config.tc_properties_get_tc_host()
    if not configured and not any(sock.exists() for sock in sockets):
        return "DOCKER_HOST is unset and no Docker socket exists"
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def minio_target() -> Iterator[S3Target]:
    """A MinIO container for the session; skips when no Docker engine answers."""
    reason = _docker_unavailable()
    if reason is not None:
        pytest.skip(f"no Docker engine: {reason}")
    from testcontainers.community.minio import MinioContainer

    with MinioContainer() as minio:
        config = minio.get_config()
        endpoint = f"http://{config['endpoint']}"
        yield S3Target(endpoint, config["access_key"], config["secret_key"], verifies_signatures=True)


_AWS_SESSION = aioboto3.Session()
"""Shared by every test store, so botocore parses the S3 service model once."""


@asynccontextmanager
async def s3_bucket(target: S3Target) -> AsyncIterator[S3Storage]:
    """An S3 backend on a fresh bucket, emptied and removed afterwards."""
    storage = S3Storage(
        f"gpurelay-test-{uuid.uuid4().hex[:12]}",
        endpoint_url=target.endpoint_url,
        access_key_id=target.access_key_id,
        secret_access_key=target.secret_access_key,
        part_size=MIN_PART_SIZE,
        session=_AWS_SESSION,
    )
    async with storage:
        await storage.ensure_bucket()
        try:
            yield storage
        finally:
            async for info in storage.list():
                await storage.delete(info.key)
            await (await storage.client()).delete_bucket(Bucket=storage.bucket)


@pytest.fixture
async def s3_storage(moto_target: S3Target) -> AsyncIterator[S3Storage]:
    """An S3 backend on moto, one bucket per test."""
    async with s3_bucket(moto_target) as storage:
        yield storage


@pytest.fixture(params=["local", "s3", pytest.param("minio", marks=pytest.mark.docker)])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    return str(request.param)


@pytest.fixture
def target(backend: str, request: pytest.FixtureRequest) -> Gateway | S3Target:
    """The served gateway (local) or the S3 server of ``backend``."""
    name = {"local": "gateway", "s3": "moto_target", "minio": "minio_target"}[backend]
    value: Gateway | S3Target = request.getfixturevalue(name)
    return value


@pytest.fixture
def verifies_signatures(target: Gateway | S3Target) -> bool:
    """Whether the server refuses a request that breaks a pre-signed URL's signed headers."""
    return isinstance(target, Gateway) or target.verifies_signatures


@pytest.fixture
async def storage(target: Gateway | S3Target) -> AsyncIterator[Storage]:
    """A fresh, empty store of each backend."""
    if isinstance(target, Gateway):
        async with LocalStorage.from_settings(target.settings) as local:
            yield local
    else:
        async with s3_bucket(target) as s3:
            yield s3
