"""Time the parts of a service's stop, and name them in one warning when the stop was slow.

A stop has a grace (a supervisor's, a test's) past which it is killed; when one comes close, the log
says which part took the time (the fold's batch in hand, the pool's workers, the NATS drain), not
only that it was slow.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)
SLOW_STOP_S = 2.0
"""A stop that took longer than this is reported (a warning naming its parts)."""


class StopClock:
    """The seconds each part of one stop took; :meth:`report` warns when their sum passed ``slow_s``."""

    def __init__(self, service: str, slow_s: float = SLOW_STOP_S) -> None:
        self.service, self.slow_s = service, slow_s
        self.parts: list[tuple[str, float]] = []
        self._began = time.monotonic()

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Time the block as part ``name`` (counted whether it ends or raises)."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.parts.append((name, time.monotonic() - began))

    def report(self) -> float:
        """Warn when the stop so far took longer than ``slow_s``, its parts slowest first; its seconds."""
        took = time.monotonic() - self._began
        if took > self.slow_s:
            slowest = sorted(self.parts, key=lambda part: -part[1])
            parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in slowest if seconds >= 0.05)
            log.warning("%s took %.1f s to stop: %s", self.service, took, parts or "no part stood out")
        return took
