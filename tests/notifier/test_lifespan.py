"""The notifier's lifespan sets its stuck-server watch where every NATS failure it sees is told."""

from __future__ import annotations

from pathlib import Path

from contracts.streams import JOBS
from contracts.subjects import Namespace
from services.common.http.nats_failover import StuckServerWatch
from services.common.nats.server.embedded import EmbeddedNats
from services.notifier.app import create_app
from services.notifier.state import NotifierState
from tests.support.notifier import notifier_settings


async def test_a_started_notifier_watches_its_nats_server_and_a_stopped_one_does_not(
    tmp_path: Path, nats_server: EmbeddedNats, namespace: Namespace
) -> None:
    """The 503 handler (``app.state.nats_watches``) and the shared SSE feed tell the same watch, on the
    notifier's connection (services/common/http/nats_failover.py)."""
    app = create_app(notifier_settings(nats_server.url, namespace, tmp_path))
    async with app.router.lifespan_context(app):
        state: NotifierState = app.state.notifier
        (watch,) = app.state.nats_watches
        assert isinstance(watch, StuckServerWatch)
        assert watch is state.nats_watch
        assert watch.nc is state.nc
        assert watch.stream == namespace.stream(JOBS)
        assert state.hub is not None
        assert state.hub.unavailable == watch.failed
    assert app.state.nats_watches == ()
