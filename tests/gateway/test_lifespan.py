"""The gateway's lifespan stops what it started, also when a later part of its start fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.streams import JOBS
from contracts.subjects import Namespace
from services.common.http.nats_failover import StuckServerWatch
from services.common.http.tenant_origins import TenantOrigins
from services.common.nats.embedded import EmbeddedNats
from services.gateway.app import create_app
from services.gateway.state import GatewayState
from tests.support.gateway import gateway_settings


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
    """The 503 handler tells ``app.state.nats_watch`` of requests failed for want of NATS
    (services/common/http/nats_failover.py): the gateway sets it while it runs, on its connection."""
    settings = gateway_settings(tmp_path, "http://testserver", nats_url=nats_server.url, namespace=namespace.name)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        watch = app.state.nats_watch
        assert isinstance(watch, StuckServerWatch)
        assert watch.nc is app.state.nats
        assert watch.stream == namespace.stream(JOBS)
    assert app.state.nats_watch is None
