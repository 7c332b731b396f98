"""Fixtures of the worker runtime's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.streams import Declarations
from contracts.subjects import Namespace
from modal_workers.runtime.worker_runtime import WorkerRuntime
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.lap import closing, nats_runtime


@pytest.fixture
def local_runtime(
    nats_server: EmbeddedNats, namespace: Namespace, declared: Declarations, tmp_path: Path
) -> Iterator[WorkerRuntime]:
    """A runtime publishing straight to JetStream, as the local pool's (closed after the test)."""
    runtime = nats_runtime(nats_server.url, namespace.name, tmp_path, cancel_grace_s=0.05)
    with closing(runtime):
        yield runtime
