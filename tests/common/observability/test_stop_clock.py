"""``StopClock``: a slow stop is one warning naming its parts, slowest first; a prompt one says nothing."""

from __future__ import annotations

import logging
import time

import pytest

from services.common.observability.stop_clock import StopClock

LOGGER = "services.common.observability.stop_clock"


def _failing_part(clock: StopClock, name: str, seconds: float) -> None:
    with clock.part(name):
        time.sleep(seconds)
        raise RuntimeError("worker would not stop")


def test_a_slow_stop_names_its_parts_slowest_first(caplog: pytest.LogCaptureFixture) -> None:
    clock = StopClock("dispatcher", slow_s=0.1)
    with clock.part("health server"):
        pass
    with clock.part("tasks"):
        time.sleep(0.15)
    with pytest.raises(RuntimeError):  # a part that fails is timed all the same
        _failing_part(clock, "pool", 0.06)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        took = clock.report()
    assert took >= 0.21
    assert [name for name, _ in clock.parts] == ["health server", "tasks", "pool"]
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith(f"dispatcher took {took:.1f} s to stop: tasks ")
    assert message.index("tasks") < message.index("pool")
    assert "health server" not in message  # under 0.05 s: not worth naming


def test_a_prompt_stop_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = StopClock("gateway", slow_s=5.0)
    with clock.part("tasks"):
        pass
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert clock.report() < 5.0
    assert caplog.records == []
