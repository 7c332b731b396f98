"""Fixtures of the App API tests: the embedded stack, one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.app_api import AppStack, app_stack


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AppStack]:
    """``gpurelay dev`` in this process: gateway with notifier, dispatcher, local pool, NATS."""
    async with app_stack(tmp_path, monkeypatch) as running:
        yield running
