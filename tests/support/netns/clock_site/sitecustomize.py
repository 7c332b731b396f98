"""Python on a host whose wall clock is stepped (libfaketime): ``time.sleep`` without ``clock_nanosleep``.

libfaketime 0.9.10 with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` (the wall clock moves, the monotonic clock
does not, as in a real step) fails ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`` with EINVAL,
which is what ``time.sleep`` calls; this module is first on ``PYTHONPATH`` of such a host only, and
makes ``time.sleep`` wait in ``select`` against the monotonic clock instead.
"""

import os
import select
import time

if "FAKETIME_TIMESTAMP_FILE" in os.environ:

    def _sleep(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            select.select([], [], [], left)

    time.sleep = _sleep
