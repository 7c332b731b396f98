"""``python -m services.dispatcher``: one dispatcher replica until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from services.common.config import DispatcherSettings, load_settings
from services.common.logging import setup_logging
from services.dispatcher.service import Dispatcher


async def serve(settings: DispatcherSettings) -> None:
    """Run a :class:`Dispatcher` until a stop signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    dispatcher = Dispatcher(settings)
    await dispatcher.start()
    print("dispatcher ready", flush=True)
    try:
        await stop.wait()
    finally:
        await dispatcher.stop()


def main() -> None:
    """Entry point."""
    settings = load_settings(DispatcherSettings)
    setup_logging(settings, service="dispatcher")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
