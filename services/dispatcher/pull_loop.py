"""One message at a time from a durable pull consumer, for as long as the task runs.

The serial fold (:mod:`~services.dispatcher.fold.serial`) and each kind's tickets
(:mod:`~services.dispatcher.running.tickets`) read their consumers this way: one long pull request of
one message at a time (:class:`~services.common.nats.long_pull.LongPull`: an idle consumer costs two
messages per 30 s, not two a second), the message handled before the next is asked for, a broken pull
retried (never ends the loop). A cancel ends the open request at once, and a message it had brought
that was not handled yet is given back (nak'ed) for another replica to take at once, not after its
ack wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.common.nats.long_pull import LongPull

log = logging.getLogger(__name__)


async def pull_one_at_a_time(
    psub: JetStreamContext.PullSubscription, durable: str, handle: Callable[[Msg], Awaitable[None]]
) -> None:
    """Pull and ``handle`` one message after another until cancelled. ``psub`` names the consumer
    (nats-py's binding, which made it); its own inbox is not read."""
    puller = LongPull(psub._nc, psub._stream, psub._consumer)
    with contextlib.suppress(Exception):
        await psub.unsubscribe()  # the binding's inbox is never read; else the connection's drain waits for it
    try:
        while True:
            try:
                msg = await puller.next()
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken pull must not end the loop for good
                log.exception("%s: pull failed; retrying", durable)
                await asyncio.sleep(0.5)
                continue
            await handle(msg)
    finally:
        with contextlib.suppress(Exception):
            for msg in await puller.close():
                await msg.nak()
