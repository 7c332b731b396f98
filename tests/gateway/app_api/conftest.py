"""Fixtures of the App API tests: the embedded stack, one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.app_api import AppStack, app_stack


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AppStack]:
    """``gpurelay dev`` in this process: gateway with notifier, dispatcher, local pool, NATS.

    A batch of 1000 joint samples is 1000 fsyncs before its ack: a loaded machine took over the 5 s
    default (503)."""
    monkeypatch.setenv("GPURELAY_ROBOT_CONFIRM_TIMEOUT_S", "30")
    async with app_stack(tmp_path, monkeypatch) as running:
        yield running
