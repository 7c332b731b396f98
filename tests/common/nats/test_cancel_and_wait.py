"""``cancel_and_wait`` ends a task that swallowed a cancel (as nats-py's requests may on 3.11)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.common.nats.connection import cancel_and_wait


async def test_a_task_that_swallows_a_cancel_is_cancelled_again_until_it_ends() -> None:
    swallowed, started = asyncio.Event(), asyncio.Event()

    async def renewing() -> None:
        started.set()
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:  # the cancel lost (a reply won the race): go on
                if swallowed.is_set():
                    raise
                swallowed.set()

    task = asyncio.create_task(renewing())
    await started.wait()
    await asyncio.wait_for(cancel_and_wait([task], again_s=0.05), timeout=2.0)
    assert swallowed.is_set()
    assert task.cancelled()


async def test_ended_tasks_and_their_errors_are_collected_and_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(failing(), name="doomed")
    done = asyncio.create_task(asyncio.sleep(0))
    await asyncio.wait([failed, done])  # both ended before the stop
    with caplog.at_level(logging.WARNING, logger="services.common.nats.connection"):
        await cancel_and_wait([failed, done])
    assert isinstance(failed.exception(), RuntimeError)
    assert done.done()
    assert [r.getMessage() for r in caplog.records] == ["task doomed had ended with RuntimeError('boom')"]
