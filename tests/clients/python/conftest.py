"""Fixtures of the Python client's tests: one embedded stack for the package, clients, lap videos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gpurelay_client import Client

from tests.clients.python.stack import ROUTES, ThreadedStack
from tests.support.lap import scrolling_video


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedStack]:
    """The embedded stack (lap_compare on the local pool, sessions on the echo workload, which leaves its
    pid in ``marks``: ``{session id}.a{attempt}.{pid}``)."""
    root = tmp_path_factory.mktemp("client-stack")
    routes = root / "routes.yaml"
    routes.write_text(ROUTES)
    (root / "marks").mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GPURELAY_ROUTE_TABLE", str(routes))
        env.setenv("GPURELAY_TEST_MARKS", str(root / "marks"))
        env.delenv("GPURELAY_API_KEY", raising=False)
        running = ThreadedStack(root / "data")
        try:
            running.start()
            yield running
        finally:
            running.stop()


@pytest.fixture
def client(stack: ThreadedStack) -> Iterator[Client]:
    """A blocking client with the dev key."""
    with Client(stack.url, api_key=stack.api_key, timeout=30) as http:
        yield http


@pytest.fixture(scope="package")
def lap_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small lap video (24 frames, 160x120, mp4v) drawn by OpenCV."""
    path = tmp_path_factory.mktemp("media") / "lap.mp4"
    return scrolling_video(path, [3.0 * k for k in range(24)], size=(160, 120))
