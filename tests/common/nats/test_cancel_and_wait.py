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


async def test_a_task_still_stopping_after_slow_s_is_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    started = asyncio.Event()

    async def lingering() -> None:  # finishes its work for a while after the cancel, as a fold's batch does
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)
            raise

    async def prompt() -> None:
        await asyncio.sleep(10)

    tasks = [asyncio.create_task(lingering(), name="fold-3"), asyncio.create_task(prompt(), name="sweep")]
    await started.wait()
    with caplog.at_level(logging.WARNING, logger="services.common.nats.connection"):
        await asyncio.wait_for(cancel_and_wait(tasks, again_s=5.0, slow_s=0.05), timeout=2.0)
    assert all(task.cancelled() for task in tasks)
    assert [r.getMessage() for r in caplog.records] == ["1 task(s) still stopping 0.05 s after their cancel: fold-3"]


async def test_a_prompt_stop_warns_of_nothing(caplog: pytest.LogCaptureFixture) -> None:
    task = asyncio.create_task(asyncio.sleep(10), name="sweep")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="services.common.nats.connection"):
        await cancel_and_wait([task], slow_s=1.0)
    assert task.cancelled()
    assert caplog.records == []
