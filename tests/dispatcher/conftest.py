"""Fixtures of the dispatcher tests: settings, the jobs bucket, an event log, in-process dispatchers and
dispatcher processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import streams
from contracts.route_table import Route
from contracts.streams import Declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.running.backends import Backend
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatcherSettings
from tests.support.dispatcher import EventLog, dispatcher_settings
from tests.support.dispatcher_processes import Replica, StartReplica, replica_starter
from tests.support.scheduling import InstantBackend


@pytest.fixture
def settings(nats_server: EmbeddedNats, namespace: Namespace, tmp_path: Path) -> DispatcherSettings:
    """Fast dispatcher settings for this test's namespace."""
    return dispatcher_settings(nats_server.url, namespace, tmp_path / "data")


@pytest.fixture
async def jobs_kv(js: JetStreamContext, declared: Declarations, namespace: Namespace) -> KeyValue:
    """KV ``jobs`` of this test."""
    return await js.key_value(namespace.bucket(streams.KV_JOBS))


@pytest.fixture
async def event_log(js: JetStreamContext, declared: Declarations, namespace: Namespace) -> AsyncIterator[EventLog]:
    """Every job event of this test, as it is stored."""
    log = await EventLog().start(js, namespace)
    yield log
    await log.stop()


@pytest.fixture
async def instant(js: JetStreamContext, subjects: Subjects) -> AsyncIterator[InstantBackend]:
    """A backend that ends each run after 0.01 s (a test may change ``run_s``), its gate shut until
    the test opens it."""
    backend = InstantBackend(js, subjects, run_s=0.01)
    yield backend
    await backend.close()


StartDispatcher = Callable[..., Awaitable[Dispatcher]]


@pytest.fixture
async def start_dispatcher(settings: DispatcherSettings, declared: Declarations) -> AsyncIterator[StartDispatcher]:
    """Start in-process dispatchers with given routes (and backends, setting overrides, checked as the
    settings' own validators check them); stopped at the end."""
    started: list[Dispatcher] = []

    async def start(
        routes: dict[str, Route], backends: dict[str, Backend] | None = None, **overrides: object
    ) -> Dispatcher:
        checked = DispatcherSettings.model_validate({**dict(settings), **overrides})  # a copy skips the checks
        dispatcher = Dispatcher(checked, routes=routes, backends=backends)
        await dispatcher.start()
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        await dispatcher.stop()


@pytest.fixture
async def replicas(settings: DispatcherSettings, tmp_path: Path) -> AsyncIterator[StartReplica]:
    """Start dispatcher processes (:func:`~tests.support.dispatcher_processes.replica_starter`); all
    stopped at the end."""
    started: list[Replica] = []
    yield replica_starter(settings, tmp_path, started)
    for replica in started:
        replica.stop()
