"""A round trip to the NATS server (PING, then its PONG) that a timeout cannot break.

nats-py's ``flush(timeout)`` cancels the future of its PING when the timeout passes, but leaves it
queued: the PONG that comes later (a paused server, a stalled link) meets a cancelled future in the
connection's read loop, which raises ``InvalidStateError`` there and drops the connection. Here the
PING is never cancelled while its PONG can still come: at most one is in flight per connection, a
call that finds it in flight waits on it too, and one sent before a reconnect (whose PONG can no
longer come: nats-py empties its queue of PINGs when it reconnects) is dropped for a new one.
"""

from __future__ import annotations

import asyncio
from weakref import WeakKeyDictionary

from nats.aio.client import Client as NatsClient

FOREVER_S = 365 * 86_400
"""nats-py's own timeout for the PING in flight: the wait is bounded by the caller's, never by this."""
_IN_FLIGHT: WeakKeyDictionary[NatsClient, tuple[int, asyncio.Task[None]]] = WeakKeyDictionary()


async def round_trip(nc: NatsClient, timeout_s: float) -> bool:
    """Whether the server answered a PING within ``timeout_s`` (everything published before it is
    then with the server). ``False``: not connected, or no answer in time."""
    if nc.is_closed:
        return False
    task = _in_flight(nc)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    return task in done and not task.cancelled() and task.exception() is None


def _in_flight(nc: NatsClient) -> asyncio.Task[None]:
    """The PING in flight on ``nc``, sent now if there is none (or only one from before a reconnect)."""
    reconnects = int(nc.stats.get("reconnects", 0))
    held = _IN_FLIGHT.get(nc)
    if held is not None and not held[1].done():
        if held[0] == reconnects:
            return held[1]
        held[1].cancel()  # its PONG can no longer come; nats-py dropped it from its queue
    task = asyncio.ensure_future(nc.flush(timeout=FOREVER_S))
    task.add_done_callback(_settled)
    _IN_FLIGHT[nc] = (reconnects, task)
    return task


def _settled(task: asyncio.Task[None]) -> None:
    """Consume the outcome of a PING nobody may wait for any more (no 'never retrieved' warning)."""
    if not task.cancelled():
        task.exception()
