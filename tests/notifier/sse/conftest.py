"""Fixtures of the SSE tests that stop a node of a cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.common.nats.server.cluster import NatsCluster
from tests.support.stopping import pausable_cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    """Three clustered nodes (:func:`~tests.support.stopping.pausable_cluster`)."""
    async with pausable_cluster(tmp_path / "cluster") as nodes:
        yield nodes
