"""The gateway's lifespan stops what it started, also when a later part of its start fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.streams import JOBS
from contracts.subjects import Namespace
from services.common.http.nats_failover import StuckServerWatch
from services.common.http.tenant_origins import TenantOrigins
from services.common.nats.identity import identity_settings
from services.common.nats.server.embedded import EmbeddedNats
from services.gateway.app import create_app
from services.gateway.state import GatewayState
from tests.support.gateway import gateway_settings
from tests.support.nats import server_with_users
from tests.support.nats_deploy import role_passwords


class StartFailed(Exception):
    """The failure injected into the last part of the gateway's start."""


async def test_a_start_that_fails_late_stops_the_watches_it_started(
    tmp_path: Path, nats_server: EmbeddedNats, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key cache and the quota book watch KV before the tenant CORS origins start; when that start
    fails, both watches are stopped (they went on before, on a connection being drained)."""

    async def fail(self: TenantOrigins) -> None:
        raise StartFailed

    monkeypatch.setattr(TenantOrigins, "start", fail)
    settings = gateway_settings(tmp_path, "http://testserver", nats_url=nats_server.url, namespace=namespace.name)
    app = create_app(settings)
    with pytest.raises(StartFailed):
        async with app.router.lifespan_context(app):
            pytest.fail("the gateway started")
    state: GatewayState = app.state.gateway
    assert state.admission is not None
    assert not state.key_cache.active, "the API key cache still watches KV"
    assert not state.admission.book.viewing, "the quota book still watches KV"
    assert app.state.nats is None


async def test_a_started_gateway_watches_its_nats_server_and_a_stopped_one_does_not(
    tmp_path: Path, nats_server: EmbeddedNats, namespace: Namespace
) -> None:
    """The 503 handler tells ``app.state.nats_watches`` of requests failed for want of NATS
    (services/common/http/nats_failover.py): the gateway sets one on its connection while it runs (and
    one on its ingest connection, when it has one)."""
    settings = gateway_settings(tmp_path, "http://testserver", nats_url=nats_server.url, namespace=namespace.name)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        (watch,) = app.state.nats_watches
        assert isinstance(watch, StuckServerWatch)
        assert watch.nc is app.state.nats
        assert watch.stream == namespace.stream(JOBS)
    assert app.state.nats_watches == ()


async def test_a_gateway_with_an_ingest_connection_watches_both(tmp_path: Path) -> None:
    """With NATS users, workers' events go out on an ingest connection of their own (the worker role's
    user): a server cut off from its cluster may hold either, so each has its watch."""
    async with server_with_users(tmp_path / "nats") as server:
        identity = identity_settings("gateway", Namespace(), role_passwords())
        assert "ingest_nats_user" in identity
        settings = gateway_settings(tmp_path / "data", "http://testserver", nats_url=server.url, **identity)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            own, ingest = app.state.nats_watches
            assert own.nc is app.state.nats
            assert ingest.nc is app.state.gateway.ingest_js._nc
            assert ingest.nc is not own.nc
            # Each asks what its user may read: a refused ask has no answer, and would move a healthy connection.
            assert await own.answers()
            assert await ingest.answers()
        assert app.state.nats_watches == ()
