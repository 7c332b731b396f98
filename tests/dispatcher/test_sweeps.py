"""A sweep that keeps failing is logged once, then quietly, then when it works again: not a traceback
per run (two a second for the queue's top-up before). The first failure is a warning naming the error
when NATS is away (what a fault brings to every sweep at once), an error with its traceback otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from services.common.nats.connection import cancel_and_wait
from services.dispatcher import sweeps

FAILURES = 20


class FlakySweep:
    """Fails :data:`FAILURES` times with ``error`` (by default as a sweep does while a stream has no
    leader), then works."""

    def __init__(self, error: type[Exception] = TimeoutError) -> None:
        self.runs = 0
        self.error = error
        self.worked = asyncio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        if self.runs <= FAILURES:
            raise self.error("nats: timeout" if self.error is TimeoutError else "a bug")
        self.worked.set()


async def run_until_it_works(sweep: FlakySweep, repeat_log_s: float) -> None:
    task = asyncio.create_task(sweeps.every(0.001, sweep, first=True, repeat_log_s=repeat_log_s))
    try:
        await asyncio.wait_for(sweep.worked.wait(), 30)
    finally:
        await cancel_and_wait([task])


async def test_a_run_of_failures_logs_one_traceback_and_the_recovery(caplog: pytest.LogCaptureFixture) -> None:
    sweep = FlakySweep(RuntimeError)
    with caplog.at_level(logging.INFO, logger=sweeps.__name__):
        await run_until_it_works(sweep, repeat_log_s=3600)
    records = [r for r in caplog.records if r.name == sweeps.__name__]
    assert [r.levelname for r in records] == ["ERROR", "INFO"]
    assert records[0].exc_info is not None
    assert f"after {FAILURES} failed runs" in records[1].getMessage()


async def test_a_run_of_failures_while_nats_is_away_logs_one_warning_and_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sweep = FlakySweep(TimeoutError)
    with caplog.at_level(logging.INFO, logger=sweeps.__name__):
        await run_until_it_works(sweep, repeat_log_s=3600)
    records = [r for r in caplog.records if r.name == sweeps.__name__]
    assert [r.levelname for r in records] == ["WARNING", "INFO"]
    assert records[0].exc_info is None
    assert "(NATS away: TimeoutError('nats: timeout'))" in records[0].getMessage()
    assert f"after {FAILURES} failed runs" in records[1].getMessage()


async def test_a_sweep_still_failing_is_logged_again_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    sweep = FlakySweep()
    with caplog.at_level(logging.INFO, logger=sweeps.__name__):
        await run_until_it_works(sweep, repeat_log_s=0)
    records = [r for r in caplog.records if r.name == sweeps.__name__]
    repeats = [r for r in records if r.levelname == "WARNING" and "still fails" in r.getMessage()]
    assert len(repeats) == FAILURES - 1
    assert all(r.exc_info is None for r in repeats)
    assert f"({FAILURES} runs in a row)" in repeats[-1].getMessage()


async def test_each_failed_run_is_told_and_a_run_that_works_is_not() -> None:
    """``failed`` (the replica's stuck-server watch) hears of every run that raised, once each."""
    sweep, told = FlakySweep(), []
    task = asyncio.create_task(sweeps.every(0.001, sweep, first=True, failed=lambda: told.append(sweep.runs)))
    try:
        await asyncio.wait_for(sweep.worked.wait(), 30)
    finally:
        await cancel_and_wait([task])
    assert told == list(range(1, FAILURES + 1))


async def test_a_cancel_the_sweep_swallowed_still_ends_the_loop_before_the_next_run() -> None:
    """As a sweep's request whose reply came with the cancel: the loop ends, not at the second cancel (15 s)."""
    runs, in_sweep = 0, asyncio.Event()

    async def swallowing() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:  # later runs end at once, so a loop that went on still ends at a cancel in its sleep
            in_sweep.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()

    task = asyncio.create_task(sweeps.every(0.001, swallowing, first=True))
    try:
        await asyncio.wait_for(in_sweep.wait(), 10)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert task in done, f"the loop went on after its cancel ({runs} runs)"
        assert runs == 1
    finally:
        await cancel_and_wait([task], again_s=0.5, slow_s=0.25)
