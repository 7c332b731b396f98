"""Progress reports throttled (four a second by default), the latest one never lost.

:class:`ProgressThrottle` sends a report at once when the last one went at least the run's
``progress_min_interval_s`` ago (:data:`~contracts.runs.PROGRESS_MIN_INTERVAL_S` by default) or it is
100 %; otherwise it keeps it as *pending* (a newer
one replaces it) and sends it when the interval ends, from a timer thread. So a workload that
reports in bursts and then goes quiet, as a live session between chunks does, still has its latest
figures out within the interval. :meth:`ProgressThrottle.flush` sends the pending report now (before
an artifact, at the end of a run); after :meth:`ProgressThrottle.stop` nothing is sent (the
runtime stops it before the terminal event). ``send`` is called with the throttle's lock held, one
report at a time, in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

Report = tuple[float, str | None, dict[str, Any] | None]
"""A progress report: fraction, message, metrics."""


class ProgressThrottle:
    """Reports to ``send`` at most once per ``interval_s``; the latest one always goes (see the module docstring)."""

    def __init__(self, send: Callable[[float, str | None, dict[str, Any] | None], None], interval_s: float) -> None:
        self.send, self.interval_s = send, interval_s
        self._lock = threading.Lock()
        self._last_sent = float("-inf")
        self._pending: Report | None = None
        self._timer: threading.Timer | None = None
        self._stopped = False

    def report(self, fraction: float, message: str | None, metrics: dict[str, Any] | None) -> None:
        """Send now if the interval is over (or ``fraction`` is 1), else when it is."""
        with self._lock:
            now = time.monotonic()
            wait = self._last_sent + self.interval_s - now
            if fraction < 1.0 and wait > 0:
                self._pending = (fraction, message, metrics)
                if self._timer is None:
                    self._arm(wait)
                return
            self._send((fraction, message, metrics), now)

    def flush(self) -> None:
        """Send the pending report now, if there is one."""
        with self._lock:
            if self._pending is not None and not self._stopped:
                self._send(self._pending, time.monotonic())

    def stop(self) -> None:
        """Send nothing from now on (a pending report is dropped); waits for a timer under way."""
        with self._lock:
            self._stopped, self._pending = True, None
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            timer.join()

    def _arm(self, wait: float) -> None:
        if not self._stopped:
            self._timer = threading.Timer(wait, self._due)
            self._timer.daemon = True
            self._timer.start()

    def _due(self) -> None:
        with self._lock:
            self._timer = None
            if self._pending is None or self._stopped:
                return
            now = time.monotonic()
            if (wait := self._last_sent + self.interval_s - now) > 0:  # another report went meanwhile
                self._arm(wait)
                return
            self._send(self._pending, now)

    def _send(self, report: Report, now: float) -> None:
        self._pending, self._last_sent = None, now
        self.send(*report)
