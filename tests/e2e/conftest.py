"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.cli.dev import DevStack
from tests.e2e.support import auth

ROUTES = """
profiles:
  dev:
    splat: &echo
      backend: local
      local: tests.support.session_echo:run
      function: splat
      timeout_s: 120
      retries: {max_attempts: 1}
      concurrency: 2
    vlm: *echo
  prod: {}
"""


SPLAT_ROUTES = """
profiles:
  dev:
    splat:
      backend: local
      local: modal_workers.splat:run
      function: splat
      timeout_s: 300
      retries: {max_attempts: 1}
      concurrency: 1
  prod: {}
"""


async def _stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, routes: str
) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    table = tmp_path / "routes.yaml"
    table.write_text(routes)
    monkeypatch.setenv("GPURELAY_ROUTE_TABLE", str(table))
    monkeypatch.setenv("GPURELAY_TEST_MARKS", str(tmp_path))
    dev = DevStack(data_dir=tmp_path / "data", port=0)
    try:
        env = await dev.start()
        async with httpx.AsyncClient(base_url=env["GPURELAY_URL"], headers=auth(env), timeout=30) as api:
            yield env, api
    finally:
        await dev.stop()


@pytest.fixture
async def session_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    """The embedded stack with the echo workload on the session kinds' routes."""
    async for stack in _stack(tmp_path, monkeypatch, ROUTES):
        yield stack


@pytest.fixture
async def splat_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    """The embedded stack with the real splat workload; ``gpurelay dev``'s defaults (the synthetic arm)."""
    monkeypatch.delenv("GPURELAY_SPLAT_URDF", raising=False)
    async for stack in _stack(tmp_path, monkeypatch, SPLAT_ROUTES):
        yield stack
