"""Whether a KV bucket may hold a write its watch has not seen: a core subscription on its subjects.

The fan-out must not fan an event out before the endpoints cache has every endpoint written before
that event: asking the bucket's stream for its last sequence before each batch makes sure of it, at a
request per batch (per event, at a job's pace). On a single server that request is needed only when a
write happened since the last one: the server hands a KV write to every core subscriber of its subject
while it routes it, before the stream stores it and answers the writer, so its notice is on this
connection before any event stored after that write is delivered here (one connection's messages
arrive in the order the server sent them). So :class:`WriteNotices` keeps a subscription on
``$KV.{bucket}.>`` on the fan-out's own connection and says a check is due only after a notice, after
a reconnect (notices may have been lost meanwhile) or when the server is part of a cluster (a notice
and an event may then come over different routes, in any order: every batch is checked, as before).
"""

from __future__ import annotations

import contextlib

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription


class WriteNotices:
    """Notices of the writes to one bucket, on the connection that reads the events they must precede."""

    def __init__(self, nc: NatsClient, bucket: str) -> None:
        self.nc, self.bucket = nc, bucket
        self._sub: Subscription | None = None
        self._dirty = True
        self._reconnects = -1

    async def start(self) -> None:
        """Subscribe (before the watch starts: a write from then on is noticed)."""
        self._sub = await self.nc.subscribe(f"$KV.{self.bucket}.>", cb=self._on_notice)

    async def _on_notice(self, _msg: Msg) -> None:
        self._dirty = True

    def check_due(self) -> bool:
        """Whether a check of the bucket is due; when one is, the notices so far count as checked (call
        it right before the check is sent, and :meth:`unchecked` when the check fails)."""
        reconnects = int(self.nc.stats.get("reconnects", 0))
        info = self.nc._server_info or {}
        pending = self._sub is not None and self._sub.pending_msgs > 0  # noticed, not yet handed to us
        due = self._sub is None or self._dirty or pending or reconnects != self._reconnects
        if due or info.get("cluster") or info.get("connect_urls"):
            self._dirty, self._reconnects = False, reconnects
            return True
        return False

    def unchecked(self) -> None:
        """The check failed: the next one is due whatever the notices say."""
        self._dirty = True

    async def stop(self) -> None:
        """Unsubscribe."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
