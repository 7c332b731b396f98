"""A pull consumer that one client at a time reads: JetStream's ``pinned_client`` priority group.

nats-server (2.11+) pins a consumer's priority group to the first client that pulls from it: only
that client's pulls get messages until it unpins or stops pulling for ``priority_timeout``; the
others' pulls wait. That makes a batch safe to fold: no other replica can fetch a later event of
the same partition while this one folds the batch. :class:`PinnedPull` keeps one request open, so
events stream to the holder as they are stored. The server assigns a pin only when it delivers, and
keeps a request without a pin id waiting (no 423) while another client holds the pin: so an unpinned
client may wait long in a request for one message (an idle partition), which the message that pins it
ends. nats-py (2.16) has no priority groups, so the consumer is made
(:mod:`~services.dispatcher.fold.pinned.consumer`) and pulled with the JetStream API's own JSON requests
(``CONSUMER.MSG.NEXT`` with ``group`` and ``id``, ``CONSUMER.UNPIN``); the messages are nats-py's own
:class:`~nats.aio.msg.Msg` (ack as usual).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import deque
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.common.event_loop import get_within
from services.common.nats.long_pull import CONSUMER_DELETED, LEADER_ELECTED
from services.dispatcher.fold.pinned.consumer import (
    API,
    GROUP,
    NANOS,
    ConsumerUnavailable,
    PinnedConsumer,
    jetstream_api,
)

log = logging.getLogger(__name__)
PIN_HEADER = "Nats-Pin-Id"
RECONNECT_CHECK_S = 1.0
"""How often a wait on a request looks for a reconnect, which ends it (a quiet partition's lasts 30 s)."""
STATUS_GRACE_S = 5.0
"""How long after its expiry a request's status may still come before it is presumed gone."""


class PinnedPull:
    """Keeps one pull request open on :class:`PinnedConsumer` for this client: while it holds the pin,
    messages stream in as they are stored (no request per batch), and :meth:`batch` hands out what came.

    Each request has its own reply subject under one inbox subscription kept open while the puller
    lives, so a late status of an earlier request cannot end a later one. A request ends with a
    status (its expiry: 408; the pin taken by another client: 423) or, silently, once it delivered
    its ``batch``; the next is sent when one is wanted. To let go of the pin the caller stops asking
    for more (``batch(..., more=False)``) until nothing is in flight (:attr:`idle`), then unpins: no
    message of this client's can come after that.

    A new leader of the consumer (its advisory) tells its predecessor's waiting requests so (409) only
    when it had heard of them, which a request sent while the cluster was split or a node paused may
    miss: then nothing came for a request's whole life (30 s) after the fault healed. So an election
    makes the open request uncertain at once, as an overdue one is, and the next one is sent. A deletion
    of the consumer (its advisory) ends the open request for sure, where no status may come either: the
    next one is refused (503), and the caller makes the consumer again at once, not after 30 s.
    """

    def __init__(self, nc: NatsClient, consumer: PinnedConsumer) -> None:
        self.nc, self.consumer = nc, consumer
        self._next = f"{API}.CONSUMER.MSG.NEXT.{consumer.stream}.{consumer.durable}"
        self._inbox = nc.new_inbox()
        self._requests = itertools.count()
        self.pulls = 0
        """Pull requests sent so far."""
        self._sub: Subscription | None = None
        self._advised: list[Subscription] = []
        self.elections = 0
        """Leader elections of the consumer heard so far (each ends the requests sent before it)."""
        self.deletions = 0
        """Deletions of the consumer heard so far (each ends every request sent before it, for sure)."""
        self._pin: str | None = None
        self._open: _Request | None = None
        self._ready: deque[Msg] = deque()
        self._uncertain: _Request | None = None
        """A request presumed gone without its status: it may still deliver until its late status
        comes, a reconnect, the pin moving on, or its ``unsure_until`` passes."""
        # The server hands out at most max_ack_pending messages, plus one status per request.
        self._received: asyncio.Queue[Msg] = asyncio.Queue(maxsize=2 * consumer.max_ack_pending + 64)
        self.last_delivery = 0
        """The consumer sequence of the last message delivered to this client (every delivery to any
        client takes the next one: a message at ``last_delivery + 1`` says no one else got one since)."""

    async def start(self) -> None:
        """Open the inbox."""
        if self._sub is None:
            self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_msg)
        if not self._advised:
            for advisory, heard in ((LEADER_ELECTED, self._on_elected), (CONSUMER_DELETED, self._on_deleted)):
                subject = advisory.format(stream=self.consumer.stream, durable=self.consumer.durable)
                self._advised.append(await self.nc.subscribe(subject, cb=heard))

    async def _on_elected(self, msg: Msg) -> None:
        self.elections += 1

    async def _on_deleted(self, msg: Msg) -> None:
        self.deletions += 1

    async def _on_msg(self, msg: Msg) -> None:
        try:
            self._received.put_nowait(msg)
        except asyncio.QueueFull:  # never with a server keeping max_ack_pending: redelivered after the ack wait
            log.error("%s: the inbox is full; a message is dropped", self.consumer.durable)

    async def close(self) -> None:
        """Close the inbox (what it still holds is redelivered after the ack wait)."""
        subs, self._sub, self._advised = (self._sub, *self._advised), None, []
        for sub in subs:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    @property
    def requesting(self) -> bool:
        """A request is open (a shorter wait on it sends nothing)."""
        return self._open is not None

    @property
    def idle(self) -> bool:
        """No request is open and nothing delivered waits: safe to unpin (nothing more can come)."""
        return self._open is None and not self._ready and not self._unsure()

    def _unsure(self) -> bool:
        """Whether a request given up on may still deliver. Resolved by its late status
        (:meth:`_take`), a reconnect (the server dropped it with the old connection), or time: by
        ``unsure_until`` the server has expired it by its own clock (a paused server or process
        included) and the pin's timeout has passed."""
        request = self._uncertain
        if request is None:
            return False
        gone = self._reconnects() != request.reconnects or request.deletions != self.deletions
        if gone or asyncio.get_running_loop().time() >= request.unsure_until:
            self._uncertain = None
            return False
        return True

    async def batch(self, size: int, wait_s: float, more: bool = True) -> list[Msg]:
        """Up to ``size`` messages delivered so far; when none has come, the first to come within
        ``wait_s`` (with what came along), a request lasting ``wait_s`` sent when none is open
        (``more=False``: none sent, so the open one runs out: :attr:`idle` once it ended). Empty when
        another client holds the pin, or nothing came."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait_s
        while not self._ready:
            if self._open is None and not more:
                if not await self._await_late_status(give_up):
                    return []
                continue
            if self._open is None:
                await self._request(size, wait_s)
            assert self._open is not None
            if self._open.reconnects != self._reconnects():  # the server dropped it with the old connection
                self._open = None
                continue
            if self._open.deletions != self.deletions:  # gone with its consumer: the next one is refused (503)
                self._open, self._uncertain, self._pin = None, None, None
                continue
            if self._open.elections != self.elections:  # sent to a former leader: it may never end
                self._give_up_waiting(loop.time(), force=True, why="the consumer has a new leader")
                continue
            now = loop.time()
            left = min(give_up, self._open.presumed_gone_at) - now
            if left <= 0:
                self._give_up_waiting(now)
                return []
            with contextlib.suppress(TimeoutError):  # in slices: a long request's reconnect is seen soon
                self._take(await get_within(self._received, min(left, RECONNECT_CHECK_S)))
        while not self._received.empty() and len(self._ready) < size:  # what came along with it
            self._take(self._received.get_nowait())
        return [self._ready.popleft() for _ in range(min(size, len(self._ready)))]

    async def _await_late_status(self, give_up: float) -> bool:
        """With no request open but one given up on still unsure: wait (until ``give_up``) for what
        the inbox brings, its late status above all; whether anything came. Never returns at once
        while unsure, so a caller waiting for :attr:`idle` cannot spin."""
        if not self._unsure():
            return False
        assert self._uncertain is not None
        left = min(give_up, self._uncertain.unsure_until) - asyncio.get_running_loop().time()
        if left <= 0:
            return False
        try:
            self._take(await get_within(self._received, left))
        except TimeoutError:
            return False
        return True

    async def drain(self, timeout_s: float) -> list[Msg]:
        """Everything delivered but not handed out, and whatever the open request still delivers until
        it ends (at most ``timeout_s``): what a batch given back must be given back with, so nothing
        newer is folded before it comes again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._open is not None and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                self._take(await get_within(self._received, deadline - loop.time()))
        if self._open is not None:
            self._give_up_waiting(loop.time(), force=True)
        drained = list(self._ready)
        self._ready.clear()
        return drained

    async def unpin(self) -> bool:
        """Let the next pull of any client (this one too) take the pin; whether the server did.
        Only when :attr:`idle`: a request still open could deliver after the pin moved on."""
        if not self.idle:
            return False
        verb = f"CONSUMER.UNPIN.{self.consumer.stream}.{self.consumer.durable}"
        try:
            await jetstream_api(self.nc, verb, {"group": GROUP})
        except Exception as exc:  # noqa: BLE001 - kept pinned: the next pulls carry the pin id
            log.warning("%s: could not unpin (%s); still pinned", self.consumer.durable, exc)
            return False
        self._pin = None
        return True

    async def _request(self, size: int, expires_s: float) -> None:
        """Open a pull request for ``size`` messages lasting ``expires_s`` (with this client's pin id)."""
        assert self._sub is not None, "start() first"
        reply = f"{self._inbox}.{next(self._requests)}"
        body = {
            "batch": size,
            "expires": int(expires_s * NANOS),
            "group": GROUP,
            **({"id": self._pin} if self._pin else {}),
        }
        self.pulls += 1
        loop = asyncio.get_running_loop()
        presumed_gone_at = loop.time() + expires_s + STATUS_GRACE_S
        self._open = _Request(reply, size, presumed_gone_at, self._reconnects(), self.elections, self.deletions)
        await self.nc.publish(self._next, json.dumps(body).encode(), reply=reply)

    def _take(self, msg: Msg) -> None:
        """One message from the inbox: a delivery (counted to the open request) or a request's status."""
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is None:
            self._pin = headers.get(PIN_HEADER) or self._pin
            self.last_delivery = max(self.last_delivery, delivery_seq(msg))
            self._ready.append(msg)
            if self._open is not None:
                self._open.left -= 1
                if self._open.left <= 0:  # it delivered its batch: it ends without a status
                    self._open = None
            return
        if self._uncertain is not None and msg.subject == self._uncertain.reply:
            self._uncertain = None  # the late status of a request given up on: it has ended
            if status == "423":
                self._pin = None
            return
        if self._open is None or msg.subject != self._open.reply:
            return  # an earlier request's, given up on
        self._open = None
        if status == "423":  # the pin went to another client (this one stopped pulling)
            self._pin, self._uncertain = None, None
        elif status == "503":  # no consumer answers: gone, or JetStream away
            raise ConsumerUnavailable(f"{self.consumer.durable}: no responders (503)")
        elif status not in ("404", "408", "409"):
            log.warning("%s: a pull ended with %s %s", self.consumer.durable, status, headers)

    def _give_up_waiting(self, now: float, force: bool = False, why: str = "a pull's end is overdue") -> None:
        """Forget the open request once its status is overdue (or ``force``): gone with a reconnect
        (the server dropped it with the old connection), else presumed gone but uncertain (not
        :attr:`idle` until a reconnect or the pin moving on)."""
        request = self._open
        if request is None or (now < request.presumed_gone_at and not force):
            return
        if self._reconnects() == request.reconnects:
            request.unsure_until = now + self.consumer.pin_timeout_s
            log.warning("%s: %s; the pin is kept until the pull's status comes or for %g s",
                        self.consumer.durable, why, self.consumer.pin_timeout_s)  # fmt: skip
            self._uncertain = request
        self._open = None

    def _reconnects(self) -> int:
        return int(self.nc.stats.get("reconnects", 0))

    @property
    def pin(self) -> str | None:
        """The pin id this client holds, as the last message said (``None``: not pinned)."""
        return self._pin


def delivery_seq(msg: Msg) -> int:
    """The consumer sequence of a delivered message (0 when its reply subject does not say)."""
    try:
        return int(msg.metadata.sequence.consumer)
    except Exception:  # noqa: BLE001 - not a JetStream delivery
        return 0


def first_deliveries(msgs: list[Msg]) -> bool:
    """Whether each of ``msgs`` is delivered for the first time."""
    try:
        return all(msg.metadata.num_delivered == 1 for msg in msgs)
    except Exception:  # noqa: BLE001 - not a JetStream delivery
        return False


@dataclass(slots=True)
class _Request:
    """A pull request: its reply subject, how many messages it may still deliver, when its status is
    overdue, and the connection's reconnect count and the consumer's elections and deletions when it was
    sent."""

    reply: str
    left: int
    presumed_gone_at: float
    reconnects: int
    elections: int = 0
    deletions: int = 0
    unsure_until: float = 0.0
    """Once given up on without its status: when it is taken for gone whatever comes."""
