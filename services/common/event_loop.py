"""The event loop every gpurelay process runs on: uvloop's where it is installed, else asyncio's.

The gateway and the notifier run under uvicorn, whose ``loop="auto"`` already picks uvloop; the
dispatcher's entry point and a worker's event thread (:class:`~modal_workers.runtime.worker_runtime.WorkerRuntime`)
make their loop here, so every process runs on the same kind of loop. uvloop (libuv) spends about a
third less CPU per NATS round trip than asyncio's selector loop on this project's hot paths (see
BENCHMARKS.md, "Fold and dispatch"). ``GPURELAY_EVENT_LOOP=asyncio`` keeps asyncio's own loop (to
rule the loop out when something misbehaves); a worker image without uvloop falls back to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
LoopKind = Literal["uvloop", "asyncio"]
ENV = "GPURELAY_EVENT_LOOP"


def loop_kind() -> LoopKind:
    """The loop to make: ``uvloop`` unless ``GPURELAY_EVENT_LOOP=asyncio`` or it is not installed."""
    wanted = os.environ.get(ENV, "uvloop").strip().lower()
    if wanted == "asyncio":
        return "asyncio"
    if wanted != "uvloop":
        log.warning("%s=%r is neither uvloop nor asyncio: uvloop is used", ENV, wanted)
    try:
        import uvloop  # noqa: F401 - only whether it imports
    except ImportError:
        return "asyncio"
    return "uvloop"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop of :func:`loop_kind` (not set as the thread's current loop)."""
    if loop_kind() == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def running_kind() -> str:
    """The kind of the running loop: ``uvloop``, or ``asyncio`` for asyncio's own (and any other)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"


def run(main: Coroutine[Any, Any, T]) -> T:
    """:func:`asyncio.run` on a loop of :func:`loop_kind`."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


async def get_within(queue: asyncio.Queue[T], timeout_s: float) -> T:
    """The next item of ``queue``; ``TimeoutError`` after ``timeout_s``. Not ``asyncio.wait_for``: on
    3.11 it swallows a cancel that lands in the turn the item arrives (it returns the item), so a loop
    reading the queue goes on after its stop; and it runs a task per wait."""
    async with asyncio.timeout(timeout_s):
        return await queue.get()
