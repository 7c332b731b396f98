"""Shared fixtures: one real nats-server per test session, a fresh namespace per test.

Each test gets its own :class:`~contracts.subjects.Namespace`, so its subjects, streams and KV
buckets never meet another test's data on the shared server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.streams import KV_APIKEYS, Declarations, declarations
from contracts.subjects import Namespace, Subjects
from services.common.auth.apikeys import ApiKeyStore
from services.common.nats.declarations import apply_declarations
from services.common.nats.server.embedded import EmbeddedNats
from services.common.observability import tracing
from services.gateway.app import create_app
from tests.support.gateway import Gateway, Tenant, gateway_settings
from tests.support.http import bound_socket, serve
from tests.support.ordering import longest_first

pytest_plugins = ["tests.support.running"]

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / ".gpurelay-test"
JS_API_TIMEOUT_S = 15.0
"""How long the tests' own JetStream API requests wait (nats-py: 5 s)."""

# Nothing in the tests may reach a hub or write into the home directory.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(TEST_DATA / "yolo"))
os.environ.setdefault("XDG_CONFIG_HOME", str(TEST_DATA / "xdg-config"))
os.environ.setdefault("XDG_CACHE_HOME", str(TEST_DATA / "xdg-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HOME", str(TEST_DATA / "hf"))


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Gemma 3 saved like a hub checkpoint (see bench/harness/tiny_gemma.py), once per run."""
    from bench.harness.tiny_gemma import build_tiny_gemma

    return build_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma"))


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream on a free port and a temporary store, without users.

    It fsyncs on NATS' default period, not on every write as gpurelay's servers do: no test here cuts
    the power (a killed process loses nothing the page cache holds), and a sync per write made the
    NATS-bound tests about 40 % slower on the shared 2-core machine. The servers the fault tests, the
    durability tests and ``gpurelay dev`` start run ``always``.

    A stream a test leaves on it fails the session (at its last test's teardown): its byte cap stays
    reserved against the server's store limit, and a namespace's default caps (8 GiB) left by one test
    made later tests' declarations fail as insufficient storage (10047) on a fresh clone.
    """
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"), sync_interval="2m")
    server.start()
    asyncio.run(_keep_a_stream(server.url))
    yield server
    left = asyncio.run(_streams_left(server.url))
    server.stop()
    assert not left, f"streams left on the session's nats-server (use the namespace fixture): {sorted(left)}"


KEPT_STREAM = "KEPT"
"""A stream the session's server keeps for good. Deleting an account's last stream makes nats-server
remove the account's store directory in the background ("cleanup directories after the stream" in
its ``stream.go``), which can race a stream created just after. A fresh-clone ``make test`` failed
that way once: "could not create storage directory" (10049) for a test's first stream after the
previous test's namespace was deleted. With one stream always left, the directory stays."""


async def _streams_left(url: str) -> set[str]:
    """The streams on the server but :data:`KEPT_STREAM` (none known where the server no longer answers)."""
    try:
        client = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    except Exception:  # noqa: BLE001 - a server a test stopped for good: the tests that needed it failed already
        return set()
    try:
        return {info.config.name or "" for info in await client.jetstream().streams_info()} - {KEPT_STREAM}
    finally:
        await client.close()


async def _keep_a_stream(url: str) -> None:
    client = await nats.connect(url, connect_timeout=5)
    try:
        await client.jetstream().add_stream(name=KEPT_STREAM, subjects=["kept.>"])
    finally:
        await client.close()


@pytest.fixture
async def namespace(nats_server: EmbeddedNats) -> AsyncIterator[Namespace]:
    """A namespace unique to this test; its streams and buckets are deleted afterwards."""
    import nats

    ns = Namespace("t" + uuid.uuid4().hex[:12])
    yield ns
    client = await nats.connect(nats_server.url, connect_timeout=5)
    try:
        await _delete_streams_of(client.jetstream(timeout=10), ns)
    finally:
        await client.close()


CLEANUP_ROUNDS = 4
"""Tries at deleting a namespace's streams: a stress run of the parallel phase (4 workers on the 2
cores) once saw a delete go unanswered for 5 s, and the streams it left reserved their byte caps
against the server's store, failing later tests on that worker as insufficient storage (10047)."""


async def _delete_streams_of(js: JetStreamContext, ns: Namespace) -> None:
    """Delete every stream of ``ns``, listing them again after a request the server did not answer
    in time (a delete that timed out may have been done)."""
    for round_ in range(CLEANUP_ROUNDS):
        try:
            for info in await js.streams_info():
                name = info.config.name or ""
                if name.startswith((f"{ns.name}_", f"KV_{ns.name}_")):
                    with contextlib.suppress(NotFoundError):
                        await js.delete_stream(name)
            return
        except nats.errors.TimeoutError:
            if round_ == CLEANUP_ROUNDS - 1:
                raise


@pytest.fixture
def subjects(namespace: Namespace) -> Subjects:
    """Subject builders bound to this test's namespace."""
    return Subjects(namespace)


@pytest.fixture
def decls(namespace: Namespace) -> Declarations:
    """This test's stream and bucket declarations (small frame and telemetry caps)."""
    return declarations(namespace, frames_max_bytes=64 * 1024 * 1024, telemetry_max_bytes=64 * 1024 * 1024)


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NatsClient]:
    """A connection to the session's nats-server."""
    import nats

    client = await nats.connect(nats_server.url, connect_timeout=5, max_reconnect_attempts=0)
    yield client
    await client.drain()


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    """A JetStream context whose API requests wait up to :data:`JS_API_TIMEOUT_S`: the session's shared
    server, on a 2-core machine running three test workers (one of them a COLMAP reconstruction on every
    core), once took longer than nats-py's 5 s to answer a fixture's stream info on a fresh clone."""
    return nc.jetstream(timeout=JS_API_TIMEOUT_S)


@pytest.fixture
async def declared(js: JetStreamContext, decls: Declarations) -> Declarations:
    """This test's streams and buckets, applied (the namespace fixture deletes them)."""
    await apply_declarations(js, decls)
    return decls


@pytest.fixture
def span_exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process for the test: every span ended is kept in memory (off again after).

    Apps read the provider when they are made: a fixture that makes one must come after this one."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


# -- the gateway over real HTTP ------------------------------------------------------------------


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    """Settings a test module overrides for its gateway (override this fixture)."""
    return {}


@pytest.fixture
def gateway(
    tmp_path: Path, nats_server: EmbeddedNats, namespace: Namespace, gateway_overrides: dict[str, object]
) -> Iterator[Gateway]:
    """The gateway on a free loopback port: this test's namespace, blobs under its tmp dir."""
    sock = bound_socket()
    settings = gateway_settings(
        tmp_path / "data",
        f"http://127.0.0.1:{sock.getsockname()[1]}",
        nats_url=nats_server.url,
        namespace=namespace.name,
        **gateway_overrides,
    )
    app = create_app(settings)
    with serve(app, sock, ws_max_size=settings.ws_max_message_bytes):
        yield Gateway(settings, app)


@pytest.fixture
async def api_keys(gateway: Gateway, js: JetStreamContext, namespace: Namespace) -> ApiKeyStore:
    """The API key store of the served gateway (the test's own NATS connection)."""
    return ApiKeyStore(await js.key_value(namespace.bucket(KV_APIKEYS)))


async def _tenant(gateway: Gateway, keys: ApiKeyStore, name: str) -> AsyncIterator[Tenant]:
    record, key = await keys.create(name)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as http:
        yield Tenant(name, key, record.key_id, http)


@pytest.fixture
async def acme(gateway: Gateway, api_keys: ApiKeyStore) -> AsyncIterator[Tenant]:
    """Tenant ``acme`` with a fresh API key."""
    async for tenant in _tenant(gateway, api_keys, "acme"):
        yield tenant


@pytest.fixture
async def globex(gateway: Gateway, api_keys: ApiKeyStore) -> AsyncIterator[Tenant]:
    """Tenant ``globex``, the other tenant of isolation tests."""
    async for tenant in _tenant(gateway, api_keys, "globex"):
        yield tenant


@pytest.fixture
async def anonymous(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client with no API key."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        yield http


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The parallel suite hands out its heaviest files first (:mod:`tests.support.ordering`)."""
    longest_first(config, items)
