"""One message at a time from a durable pull consumer, for as long as the task runs.

The serial fold and the uploads' completions (:mod:`~services.dispatcher.fold.serial`) and each kind's
tickets (:mod:`~services.dispatcher.running.tickets`) read their consumers this way: one long pull
request of one message at a time (:class:`~services.common.nats.long_pull.LongPull`: an idle consumer
costs two messages per 30 s, not two a second), the message handled before the next is asked for, a
broken pull retried (never ends the loop). A pull refused (503: no consumer answers, it is gone or the
server cannot reach JetStream; 409: deleted, a leader change) tells ``unavailable`` (the replica's
stuck-server watch), waits :data:`REFUSED_PAUSE_S` and, after a 503, makes the consumer again
(``remake``): never a request straight after a refusal, which FastStream's pull loop sent (thousands a
second with the uploads' consumer deleted, and it never made it again). A cancel ends the open request
at once, and a message it had brought that was not handled yet is given back (nak'ed) for another
replica to take at once, not after its ack wait. A cancel that a request swallowed (3.11's ``wait_for``
returns a reply that lands with the cancel) ends the loop before its next pull all the same
(:func:`~services.common.nats.connection.cancel_requested`): under load a busy kind's ticket loop went on
taking tickets, and its replica's stop waited for the second cancel, 15 s later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.common.http.nats_failover import unwatched
from services.common.nats.connection import cancel_requested, log_failure
from services.common.nats.long_pull import LongPull, PullEnded

log = logging.getLogger(__name__)
REFUSED_PAUSE_S = 1.0
"""How long a loop waits after a refused pull before it pulls (or makes its consumer) again."""
FAILED_PAUSE_S = 0.5
"""How long a loop waits after any other failure of a pull."""
Remake = Callable[[], Awaitable[JetStreamContext.PullSubscription]]


async def pull_one_at_a_time(
    psub: JetStreamContext.PullSubscription,
    durable: str,
    handle: Callable[[Msg], Awaitable[None]],
    remake: Remake | None = None,
    unavailable: Callable[[], None] = unwatched,
) -> None:
    """Pull and ``handle`` one message after another until cancelled. ``psub`` names the consumer
    (nats-py's binding, which made it); its own inbox is not read. ``remake`` binds the consumer again,
    making it when it is gone (the same config); ``unavailable`` is told of each refused pull."""
    puller = LongPull(psub._nc, psub._stream, psub._consumer)
    await _unbind(psub)
    try:
        while True:
            if cancel_requested():
                raise asyncio.CancelledError
            try:
                msg = await puller.next()
            except asyncio.CancelledError:
                raise
            except PullEnded as refused:
                unavailable()
                log.warning("%s; pulling again in %.0f s", refused, REFUSED_PAUSE_S)
                await asyncio.sleep(REFUSED_PAUSE_S)
                if refused.status == "503" and remake is not None:
                    await _remake(durable, remake)
                continue
            except Exception as exc:  # noqa: BLE001 - a broken pull must not end the loop for good
                log_failure(log, exc, "%s: pull failed; retrying", durable)
                await asyncio.sleep(FAILED_PAUSE_S)
                continue
            if cancel_requested():  # the pull brought it as the cancel came: another replica takes it now
                with contextlib.suppress(Exception):
                    await msg.nak()
                raise asyncio.CancelledError
            await handle(msg)
    finally:
        with contextlib.suppress(Exception):
            for msg in await puller.close():
                await msg.nak()


async def _remake(durable: str, remake: Remake) -> None:
    """Bind (or make) the consumer again; a failure is logged, and the next refused pull tries again."""
    try:
        await _unbind(await remake())
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - NATS away: the next refused pull tries again
        log.warning("%s: the consumer could not be made again (%r)", durable, exc)
    else:
        log.info("%s: the consumer was bound again after a refused pull", durable)


async def _unbind(psub: JetStreamContext.PullSubscription) -> None:
    """Drop a binding's own inbox, which is never read (else the connection's drain waits for it)."""
    with contextlib.suppress(Exception):
        await psub.unsubscribe()
