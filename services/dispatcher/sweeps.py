"""The dispatcher's periodic sweeps (retention, created records, the fold audit, the queue's top-up,
the tallies, the held tickets' keep-alive): each runs every few seconds for the life of the dispatcher,
and a failed one is logged.

A sweep fails on every run while NATS is away (a paused server, a stream with no leader): logged with
its traceback each time, the queue's top-up alone wrote two a second. So a run of failures logs its
first with the traceback, then one line at most every :data:`REPEAT_LOG_S` with the count so far, and
one line when the sweep works again. A cancel that a sweep's request swallowed (3.11's ``wait_for``
returns a reply that lands with it) ends the loop all the same, not the second cancel 15 s later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from services.common.http.nats_failover import unwatched
from services.common.nats.connection import cancel_requested, log_failure

log = logging.getLogger(__name__)
REPEAT_LOG_S = 30.0
"""How often a sweep that keeps failing is logged again (one line, no traceback)."""


async def every(
    interval_s: float,
    sweep: Callable[[], Awaitable[object]],
    first: bool = False,
    repeat_log_s: float = REPEAT_LOG_S,
    failed: Callable[[], None] = unwatched,
) -> None:
    """Run ``sweep`` every ``interval_s`` (at once too when ``first``) until cancelled; ``failed`` is told
    of each run that raised (the replica's stuck-server watch: the sweeps reach NATS every few seconds)."""
    name = getattr(sweep, "__qualname__", repr(sweep))
    failures, logged_at = 0, 0.0
    if not first:
        await asyncio.sleep(interval_s)
    while True:
        try:
            await sweep()
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            failures += 1
            failed()
            now = time.monotonic()
            if failures == 1:
                logged_at = now
                log_failure(log, exc, "%s failed; the next one runs in %g s", name, interval_s)
            elif now - logged_at >= repeat_log_s:
                logged_at = now
                log.warning("%s still fails (%d runs in a row): %r", name, failures, exc)
        else:
            if failures:
                log.info("%s works again after %d failed runs", name, failures)
            failures = 0
        if cancel_requested():
            raise asyncio.CancelledError
        await asyncio.sleep(interval_s)
