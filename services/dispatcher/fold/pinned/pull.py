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
import logging
from collections import deque

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.common.event_loop import get_within
from services.common.nats.long_pull import CONSUMER_DELETED, LEADER_ELECTED
from services.dispatcher.fold.pinned.consumer import GROUP, PinnedConsumer, jetstream_api
from services.dispatcher.fold.pinned.requests import PullRequests

log = logging.getLogger(__name__)
PIN_HEADER = "Nats-Pin-Id"
RECONNECT_CHECK_S = 1.0
"""How often a wait on a request looks for a reconnect, which ends it (a quiet partition's lasts 30 s)."""


class PinnedPull:
    """Keeps one pull request open on :class:`PinnedConsumer` for this client: while it holds the pin,
    messages stream in as they are stored (no request per batch), and :meth:`batch` hands out what came.

    Each request has its own reply subject under one inbox subscription kept open while the puller
    lives; :attr:`requests` knows which is open, and which was given up on but may still deliver
    (:mod:`~services.dispatcher.fold.pinned.requests`: an overdue one, or one sent before a leader
    election of the consumer). The next request is sent when one is wanted; a deletion of the consumer
    ends the open one for sure, so the next is refused (503) and the caller makes the consumer again at
    once, not after 30 s. To let go of the pin the caller stops asking for more
    (``batch(..., more=False)``) until nothing is in flight (:attr:`idle`), then unpins: no message of
    this client's can come after that.
    """

    def __init__(self, nc: NatsClient, consumer: PinnedConsumer) -> None:
        self.nc, self.consumer = nc, consumer
        self._inbox = nc.new_inbox()
        self.requests = PullRequests(nc, consumer, self._inbox)
        self._sub: Subscription | None = None
        self._advised: list[Subscription] = []
        self._pin: str | None = None
        self._ready: deque[Msg] = deque()
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
            advisories = ((LEADER_ELECTED, self.requests.on_elected), (CONSUMER_DELETED, self.requests.on_deleted))
            for advisory, heard in advisories:
                subject = advisory.format(stream=self.consumer.stream, durable=self.consumer.durable)
                self._advised.append(await self.nc.subscribe(subject, cb=heard))

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
        return self.requests.open is not None

    @property
    def idle(self) -> bool:
        """No request is open and nothing delivered waits: safe to unpin (nothing more can come)."""
        return self.requests.open is None and not self._ready and not self.requests.unsure()

    async def batch(self, size: int, wait_s: float, more: bool = True) -> list[Msg]:
        """Up to ``size`` messages delivered so far; when none has come, the first to come within
        ``wait_s`` (with what came along), a request lasting ``wait_s`` sent when none is open
        (``more=False``: none sent, so the open one runs out: :attr:`idle` once it ended). Empty when
        another client holds the pin, or nothing came."""
        loop, requests = asyncio.get_running_loop(), self.requests
        give_up = loop.time() + wait_s
        while not self._ready:
            if requests.open is None and not more:
                if not await self._await_late_status(give_up):
                    return []
                continue
            if requests.open is None:
                assert self._sub is not None, "start() first"
                await requests.send(size, wait_s, self._pin)
            request = requests.open
            assert request is not None
            if request.reconnects != requests.reconnects():  # the server dropped it with the old connection
                requests.open = None
                continue
            if request.deletions != requests.deletions:  # gone with its consumer: the next one is refused (503)
                requests.open, requests.uncertain, self._pin = None, None, None
                continue
            if request.elections != requests.elections:  # sent to a former leader: it may never end
                requests.give_up(loop.time(), force=True, why="the consumer has a new leader")
                continue
            now = loop.time()
            left = min(give_up, request.presumed_gone_at) - now
            if left <= 0:
                requests.give_up(now)
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
        if not self.requests.unsure():
            return False
        assert self.requests.uncertain is not None
        left = min(give_up, self.requests.uncertain.unsure_until) - asyncio.get_running_loop().time()
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
        while self.requests.open is not None and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                self._take(await get_within(self._received, deadline - loop.time()))
        if self.requests.open is not None:
            self.requests.give_up(loop.time(), force=True)
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

    def _take(self, msg: Msg) -> None:
        """One message from the inbox: a delivery (counted to the open request) or a request's status."""
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is None:
            self._pin = headers.get(PIN_HEADER) or self._pin
            self.last_delivery = max(self.last_delivery, delivery_seq(msg))
            self._ready.append(msg)
            self.requests.delivered()
        elif self.requests.ended(msg.subject, status, headers):  # the pin went to another client
            self._pin = None

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
