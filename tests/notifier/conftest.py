"""Fixtures of the notifier tests: the notifier served over real HTTP, receivers, KV buckets, keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.receivers import Receiver
from contracts.streams import KV_APIKEYS, KV_JOBS, KV_WEBHOOKS, Declarations
from contracts.subjects import Namespace
from services.common.auth.apikeys import ApiKeyStore
from services.common.nats.server.embedded import EmbeddedNats
from services.notifier.app import create_app
from tests.support.http import bound_socket, serve
from tests.support.notifier import Notifier, notifier_settings


@pytest.fixture
def notifier_overrides() -> dict[str, object]:
    """Settings a test overrides (parametrize or override this fixture)."""
    return {}


@pytest.fixture
def notifier(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    declared: Declarations,
    notifier_overrides: dict[str, object],
) -> Iterator[Notifier]:
    """The notifier on a free port, with its webhook fan-out and deliveries running."""
    sock = bound_socket()
    settings = notifier_settings(nats_server.url, namespace, tmp_path / "data", **notifier_overrides)
    app = create_app(settings)
    with serve(app, sock):
        yield Notifier(settings, app, f"http://127.0.0.1:{sock.getsockname()[1]}")


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    """A webhook receiver on loopback and its base URL."""
    rx = Receiver()
    sock = bound_socket()
    with serve(rx.app(), sock):
        yield rx, f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
async def jobs_kv(js: JetStreamContext, namespace: Namespace, declared: Declarations) -> KeyValue:
    """KV ``jobs`` of this test."""
    return await js.key_value(namespace.bucket(KV_JOBS))


@pytest.fixture
async def webhooks_kv(js: JetStreamContext, namespace: Namespace, declared: Declarations) -> KeyValue:
    """KV ``webhooks`` of this test."""
    return await js.key_value(namespace.bucket(KV_WEBHOOKS))


@pytest.fixture
async def keys(js: JetStreamContext, namespace: Namespace, declared: Declarations) -> ApiKeyStore:
    """The API key store of this test."""
    return ApiKeyStore(await js.key_value(namespace.bucket(KV_APIKEYS)))


@pytest.fixture
async def http(notifier: Notifier) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the served notifier."""
    async with httpx.AsyncClient(base_url=notifier.url, timeout=30) as client:
        yield client
