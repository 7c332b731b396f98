"""Shared fixtures: one real nats-server per test session, a fresh namespace per test.

Each test gets its own :class:`~contracts.subjects.Namespace`, so its subjects, streams and KV
buckets never meet another test's data on the shared server.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.streams import Declarations, declarations
from contracts.subjects import Namespace, Subjects
from services.common.embedded_nats import EmbeddedNats
from services.common.nats import apply_declarations

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / ".gpurelay-test"

# Nothing in the tests may reach a hub or write into the home directory.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(TEST_DATA / "yolo"))
os.environ.setdefault("XDG_CONFIG_HOME", str(TEST_DATA / "xdg-config"))
os.environ.setdefault("XDG_CACHE_HOME", str(TEST_DATA / "xdg-cache"))


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream on a free port and a temporary store."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def namespace() -> Namespace:
    """A namespace unique to this test."""
    return Namespace("t" + uuid.uuid4().hex[:12])


@pytest.fixture
def subjects(namespace: Namespace) -> Subjects:
    """Subject builders bound to this test's namespace."""
    return Subjects(namespace)


@pytest.fixture
def decls(namespace: Namespace) -> Declarations:
    """This test's stream and bucket declarations (small frame cap)."""
    return declarations(namespace, frames_max_bytes=64 * 1024 * 1024)


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NatsClient]:
    """A connection to the session's nats-server."""
    import nats

    client = await nats.connect(nats_server.url, connect_timeout=5, max_reconnect_attempts=0)
    yield client
    await client.drain()


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    """A JetStream context."""
    return nc.jetstream()


@pytest.fixture
async def declared(js: JetStreamContext, decls: Declarations) -> AsyncIterator[Declarations]:
    """This test's streams and buckets, applied; deleted afterwards."""
    await apply_declarations(js, decls)
    yield decls
    for stream in decls.streams:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream.name)
    for bucket in decls.buckets:
        with contextlib.suppress(NotFoundError):
            await js.delete_key_value(bucket.name)
