"""One message at a time from a durable pull consumer, for as long as the task runs.

The serial fold (:mod:`~services.dispatcher.fold.serial`) and each kind's tickets
(:mod:`~services.dispatcher.running.tickets`) read their consumers this way: a pull of one message
waits up to :data:`FETCH_WAIT_S`, the message is handled before the next pull, a broken pull is
retried (never ends the loop), and a cancel ends it even when nats-py turns it into a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.common.nats.connection import cancel_requested

log = logging.getLogger(__name__)
FETCH_WAIT_S = 1.0
"""A pull's wait: also how long a stop may wait for it (nats-py's fetch can hold a cancel until then)."""


async def pull_one_at_a_time(
    psub: JetStreamContext.PullSubscription, durable: str, handle: Callable[[Msg], Awaitable[None]]
) -> None:
    """Pull and ``handle`` one message after another until cancelled (the subscription ends with it)."""
    try:
        while True:
            for msg in await _fetch(psub, durable):
                await handle(msg)
    finally:
        with contextlib.suppress(Exception):
            await psub.unsubscribe()  # else the connection's drain waits for it


async def _fetch(psub: JetStreamContext.PullSubscription, durable: str) -> list[Msg]:
    try:
        return await psub.fetch(1, timeout=FETCH_WAIT_S)
    except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
        if cancel_requested():  # nats-py's fetch can turn a cancel into its timeout (hence a short wait)
            raise asyncio.CancelledError from None
        return []
    except asyncio.CancelledError:
        raise
    except Exception:  # a broken pull must not end the loop for good
        log.exception("%s: fetch failed; retrying", durable)
        await asyncio.sleep(0.5)
        return []
