"""Pull requests that wait long and end at once: an idle consumer costs a request per :data:`LONG_PULL_S`.

A pull that expires after a second costs two messages a second per idle consumer (the request and its
408); one that waits 30 s costs 1/30 of that. A long wait must not make a stop, or a change of hands,
wait for it: :meth:`PullInbox.end` ends the open request at once by taking away its reply's interest
(the server skips and drops a waiting request nobody listens to), then a round trip brings whatever the
server had sent before that, so the caller can give it back (nak) rather than lose it until its ack
wait. A request lost with a connection is noticed at the reconnect (checked every
:data:`CHECK_S`, locally, with no message), not at its expiry; so is one lost with the consumer's leader
(its ``LEADER_ELECTED`` advisory): a leader that steps down drops its waiting requests silently, and the
new one answers 409 only to those it heard of, which a request sent while the cluster was split or the
leader paused may not be (``-m netfaults`` tickets waited out the 30 s). So is one open on a consumer
that was deleted (its ``DELETED`` advisory; a fresh-clone run waited out the 30 s there too). nats-py
(2.16) offers none of this, so the requests are the JetStream API's own JSON (``CONSUMER.MSG.NEXT``)
and the messages nats-py's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)
LONG_PULL_S = 30.0
"""How long an idle pull request waits before the server ends it (408) and the next is sent."""
CHECK_S = 1.0
"""How often a waiting puller looks, locally, whether its connection was re-made (its request lost)."""
STATUS_GRACE_S = 5.0
"""How long after its expiry a request's status may still come before it is presumed gone."""
NANOS = 1_000_000_000
LEADER_ELECTED = "$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.{stream}.{durable}"
"""The advisory of a consumer's new leader: a request sent before it may never end."""
CONSUMER_DELETED = "$JS.EVENT.ADVISORY.CONSUMER.DELETED.{stream}.{durable}"
"""The advisory of a deleted consumer: a request open on it may never end either (the server does not
always answer it 409), so the next one is sent at once, and its 503 tells the caller."""


class PullInbox:
    """One inbox (``{inbox}.*``) for the pull requests of one client on one consumer; each request
    has its own reply subject, so a late status of an earlier request never ends a later one."""

    def __init__(self, nc: NatsClient, stream: str, durable: str, bound: int = 1024) -> None:
        self.nc, self.durable = nc, durable
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = ""
        self._sub: Subscription | None = None
        self._numbers = itertools.count()
        self.received: asyncio.Queue[Msg] = asyncio.Queue(maxsize=bound)
        """What the inbox brought (deliveries and statuses), in order; ``bound``: more than the open
        requests' batches and their statuses can bring."""
        self.pulls = 0
        """Pull requests sent so far."""

    async def send(self, body: dict[str, Any]) -> str:
        """Send one pull request (``body`` as the JetStream API takes it); its reply subject."""
        if self._sub is None:
            self._inbox = self.nc.new_inbox()
            self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_msg)
        reply = f"{self._inbox}.{next(self._numbers)}"
        self.pulls += 1
        await self.nc.publish(self.next_subject, json.dumps(body).encode(), reply=reply)
        return reply

    async def _on_msg(self, msg: Msg) -> None:
        try:
            self.received.put_nowait(msg)
        except asyncio.QueueFull:  # never within the requests' batches: redelivered after the ack wait
            log.error("%s: the pull inbox is full; a message is dropped", self.durable)

    async def end(self) -> list[Msg]:
        """End every open request now: no reply interest (the server skips a request without it), then a
        round trip, so everything the server sent before that is in :attr:`received`; returned (statuses
        too, in order) and cleared. The next :meth:`send` opens a fresh inbox."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await self.nc._send_unsubscribe(sub._id)  # interest gone; the subscription still reads
                await self.nc.flush()
                await sub._pending_queue.join()  # what came before the flush's answer is handed on
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        came = []
        while not self.received.empty():
            came.append(self.received.get_nowait())
        return came

    def reconnects(self) -> int:
        """How often the connection was re-made (a request sent before is gone with the old one)."""
        return int(self.nc.stats.get("reconnects", 0))


class PullEnded(RuntimeError):
    """A pull request ended with a refusal: 503 (no consumer answers: gone, or JetStream away) or 409
    (the consumer deleted, too many waiting pulls, a leader change); the caller pauses and pulls again,
    or makes its consumer again."""

    def __init__(self, durable: str, status: str, description: str) -> None:
        super().__init__(f"{durable}: a pull ended with {status} {description}")
        self.status = status


class LongPull:
    """Messages from a durable pull consumer through one long request at a time.

    :meth:`take` sends a request for ``batch`` messages (lasting :data:`LONG_PULL_S`) when none is open
    and waits for what it brings, as long as it takes; with ``batch`` above one the request stays open
    and messages stream in as they are stored until it delivered its batch. :meth:`close` ends the open
    request and returns what it had delivered but nobody took.
    """

    def __init__(
        self, nc: NatsClient, stream: str, durable: str, batch: int = 1, expires_s: float = LONG_PULL_S
    ) -> None:
        self.inbox = PullInbox(nc, stream, durable, bound=batch + 64)
        self.batch, self.expires_s = batch, expires_s
        self._advisories = [f.format(stream=stream, durable=durable) for f in (LEADER_ELECTED, CONSUMER_DELETED)]
        self._heard: list[Subscription] = []
        self.elections = 0
        """Leader elections and deletions of the consumer heard so far (each ends the open request)."""
        self._open: str | None = None
        self._left = 0
        self._gone_at = 0.0
        self._reconnects = 0
        self._elections = 0

    async def next(self) -> Msg:
        """The next message of the consumer."""
        return (await self.take(1))[0]

    async def take(self, most: int) -> list[Msg]:
        """The next message, and with it those that came along (``most`` in all)."""
        loop = asyncio.get_running_loop()
        if not self._heard:
            subscribe = self.inbox.nc.subscribe
            self._heard = [await subscribe(subject, cb=self._on_request_lost) for subject in self._advisories]
        while True:
            if self._open is None:
                self._reconnects, self._elections = self.inbox.reconnects(), self.elections
                self._gone_at = loop.time() + self.expires_s + STATUS_GRACE_S
                self._left = self.batch
                body = {"batch": self.batch, "expires": int(self.expires_s * NANOS)}
                self._open = await self.inbox.send(body)
            try:
                async with asyncio.timeout(CHECK_S):
                    msg = await self.inbox.received.get()
            except TimeoutError:
                if (
                    self.inbox.reconnects() != self._reconnects
                    or self.elections != self._elections
                    or loop.time() >= self._gone_at
                ):
                    self._open = None  # lost with the connection, the consumer or its leader, or its status is overdue
                continue
            if self._delivered(msg):
                taken = [msg]
                while len(taken) < most and not self.inbox.received.empty():
                    more = self.inbox.received.get_nowait()
                    if self._delivered(more):
                        taken.append(more)
                return taken

    def _delivered(self, msg: Msg) -> bool:
        """Whether ``msg`` is a delivery (counted to the open request, which ends with its batch); a
        status ends its request (a refusal raises :class:`PullEnded`)."""
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is None:  # a delivery (its subject is the stored one)
            self._left -= 1
            if self._left <= 0:
                self._open = None
            return True
        if msg.subject != self._open or status == "100":
            return False  # an earlier request's late status, or a heartbeat
        self._open = None
        if status in ("503", "409"):
            raise PullEnded(self.inbox.durable, status, headers.get("Description", ""))
        return False

    async def _on_request_lost(self, msg: Msg) -> None:
        self.elections += 1

    async def close(self) -> list[Msg]:
        """End the open request; the deliveries it brought that :meth:`take` did not hand out."""
        self._open = None
        heard, self._heard = self._heard, []
        for subscription in heard:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        return [msg for msg in await self.inbox.end() if not (msg.headers or {}).get("Status")]
