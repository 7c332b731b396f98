"""KV watches whose idle heartbeat is seconds apart, and which start anew at once after a reconnect.

nats-py's ``KeyValue.watch`` makes an ordered push consumer with a 5 s idle heartbeat (not settable):
each watch of an idle bucket costs a message every 5 s, and the embedded stack runs seven of them, most
of its messages at rest (issue 34: ≤ 5 messages/s). :func:`watch_keys` is the same watch (nats-py's
own code, the heartbeat passed through) with a heartbeat every :data:`WATCH_HEARTBEAT_S`.

The heartbeat is how an ordered consumer notices that its consumer is gone: nats-py makes it anew after
two missed ones. The usual way to lose one is a restarted server (a watch's consumer lives in its
memory), and that comes with a reconnect; so each watch also looks, locally (no message), every
:data:`CHECK_S`, whether its connection was re-made, and then makes its consumer anew from the last
revision it saw, retried every :data:`RETRY_S` until one is made. A watch is thus blind for about a
second after a server restart (10 s before), and a consumer lost with no reconnect (a cluster node
that held it died, an operator deleted it) is noticed after two missed heartbeats: 30 s (10 s before).

:func:`renew_on_reconnect` does the same for any ordered push subscription that follows a live stream (a
session's feed, a session socket's events, a replay's follow): at nats-py's 5 s heartbeat those stalled 10 to
20 s after a server restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

WATCH_HEARTBEAT_S = 15.0
"""The idle heartbeat of a watch's consumer: 7 watches cost about 0.5 messages/s at rest (2.8/s at 5 s)."""
CHECK_S = 1.0
"""How often a watch looks, locally, whether its connection was re-made."""
RETRY_S = 2.0
"""How long after making its consumer anew a watch tries again when no consumer came of it (JetStream
not back yet after a restart)."""


class _HeartbeatJetStream:
    """A JetStream context whose push subscriptions ask for ``heartbeat_s`` idle heartbeats."""

    def __init__(self, js: JetStreamContext, heartbeat_s: float) -> None:
        self._js, self._heartbeat_s = js, heartbeat_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._js, name)

    async def subscribe(self, *args: Any, **kwargs: Any) -> JetStreamContext.PushSubscription:
        kwargs["idle_heartbeat"] = self._heartbeat_s
        return await self._js.subscribe(*args, **kwargs)


async def watch_keys(
    kv: KeyValue, keys: str = ">", *, meta_only: bool = False, heartbeat_s: float = WATCH_HEARTBEAT_S
) -> KeyValue.KeyWatcher:
    """``kv.watch(keys, meta_only=...)`` with a ``heartbeat_s`` idle heartbeat, made anew after a reconnect."""
    # nats-py keeps a bucket's JetStream context, stream name and prefix private; the copy subscribes
    # through the context that sets the heartbeat, and is otherwise the same bucket.
    quiet = KeyValue(kv._name, kv._stream, kv._pre, _HeartbeatJetStream(kv._js, heartbeat_s), kv._direct)  # type: ignore[arg-type]
    watcher = await quiet.watch(keys, meta_only=meta_only)
    assert watcher._sub is not None
    renew_on_reconnect(watcher._sub)
    return watcher


def renew_on_reconnect(sub: JetStreamContext.PushSubscription) -> JetStreamContext.PushSubscription:
    """Make ordered subscription ``sub``'s consumer anew, after the last stream sequence it saw, each time its
    connection is re-made (a restarted server lost it), instead of after two missed heartbeats; ``sub``."""
    jsi: Any = sub._sub._jsi  # nats-py's private state of a JetStream subscription (its task fields typed None)
    # nats-py cancels ``_hbtask`` when the subscription ends: the reconnect check ends with it, and ends its
    # heartbeat check.
    jsi._hbtask = asyncio.create_task(_renew_on_reconnect(jsi, jsi._hbtask), name="ordered-consumer-reconnects")
    return sub


async def _renew_on_reconnect(jsi: Any, heartbeat_check: asyncio.Task[None] | None) -> None:
    """Make the subscription's consumer anew (after the last stream sequence seen) each time the connection
    is re-made, until one is made (nats-py creates it in the background and only reports a failure)."""
    conn = jsi._conn
    try:
        seen = conn.stats.get("reconnects", 0)
        while not conn.is_closed:
            await asyncio.sleep(CHECK_S)
            if conn.stats.get("reconnects", 0) == seen:
                continue
            seen = conn.stats.get("reconnects", 0)
            while not conn.is_closed:
                before = jsi._psub._consumer
                await jsi.reset_ordered_consumer(jsi._sseq + 1)
                await asyncio.sleep(RETRY_S)
                if jsi._psub._consumer != before:  # nats-py names the new consumer once it is made
                    break
    finally:
        if heartbeat_check is not None:
            heartbeat_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat_check
