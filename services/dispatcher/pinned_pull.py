"""A pull consumer that one client at a time reads: JetStream's ``pinned_client`` priority group.

nats-server (2.11+) pins a consumer's priority group to the first client that pulls from it: only
that client's pulls get messages until it unpins or stops pulling for ``priority_timeout``; the
others' pulls wait (or get 404 at once with ``no_wait``). That makes a batch safe to fold: no other
replica can fetch a later event of the same partition while this one folds the batch. nats-py
(2.16) has no priority groups, so the consumer is made and pulled with the JetStream API's own
JSON requests here (``CONSUMER.CREATE``, ``CONSUMER.MSG.NEXT`` with ``group`` and ``id``,
``CONSUMER.UNPIN``); the messages are nats-py's own :class:`~nats.aio.msg.Msg` (ack as usual).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)
API = "$JS.API"
GROUP = "fold"
PIN_HEADER = "Nats-Pin-Id"
NANOS = 1_000_000_000
REST_WAIT_S = 0.01
"""How long the pull for the rest of a batch waits for more (the server sends what it has at once)."""
REQUESTS_PENDING = ("408", "Requests Pending")
"""The status of a ``no_wait`` pull refused because other pulls wait on the consumer."""


class PinnedPullError(RuntimeError):
    """The JetStream API refused a request (its code and description)."""


class ConsumerUnavailable(PinnedPullError):
    """A pull had no responder: the consumer is gone (deleted, its stream re-made) or JetStream is
    away; the caller backs off and makes the consumer again."""


@dataclass(frozen=True, slots=True)
class PinnedConsumer:
    """A durable pull consumer (explicit acks) whose one priority group is pinned to one client at a time.

    ``pin_timeout_s`` must exceed ``ack_wait_s``: a client that died holding a batch is unpinned only
    after its messages are due for redelivery, so the next client gets them before anything newer.
    """

    stream: str
    durable: str
    filter_subject: str
    ack_wait_s: float
    max_deliver: int
    max_ack_pending: int
    pin_timeout_s: float

    def config(self) -> dict[str, Any]:
        """The consumer's configuration as the JetStream API takes it."""
        return {
            "durable_name": self.durable,
            "filter_subject": self.filter_subject,
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": int(self.ack_wait_s * NANOS),
            "max_deliver": self.max_deliver,
            "max_ack_pending": self.max_ack_pending,
            "priority_groups": [GROUP],
            "priority_policy": "pinned_client",
            "priority_timeout": int(self.pin_timeout_s * NANOS),
        }

    async def ensure(self, nc: NatsClient) -> None:
        """Create the consumer, or replace one made with another configuration (a stream in work-queue
        retention keeps what was not acknowledged: the new consumer starts from it)."""
        wanted = self.config()
        info = await _api(nc, f"CONSUMER.INFO.{self.stream}.{self.durable}", None, missing_ok=True)
        if info is not None:
            have = info.get("config", {})
            if all(have.get(key) == value for key, value in wanted.items()):
                return
            log.warning("fold consumer %s changes its configuration: made again", self.durable)
            await _api(nc, f"CONSUMER.DELETE.{self.stream}.{self.durable}", None, missing_ok=True)
        await _api(nc, f"CONSUMER.CREATE.{self.stream}.{self.durable}", {"stream_name": self.stream, "config": wanted})


async def _api(nc: NatsClient, verb: str, body: dict[str, Any] | None, missing_ok: bool = False) -> Any:
    reply = await nc.request(f"{API}.{verb}", json.dumps(body).encode() if body else b"", timeout=5.0)
    answer = json.loads(reply.data or b"{}")
    if error := answer.get("error"):
        if missing_ok and error.get("code") == 404:
            return None
        raise PinnedPullError(f"{verb}: {error.get('code')} {error.get('description')}")
    return answer


class PinnedPull:
    """Pulls batches of :class:`PinnedConsumer`'s messages for this client, pinned while it holds them.

    Every request has its own reply subject under one inbox subscription kept open while the puller
    lives, so a message that comes after its request gave up waiting is not lost in flight: it opens
    the next batch (the server delivers in stream order, so it still precedes anything pulled later).
    """

    def __init__(self, nc: NatsClient, consumer: PinnedConsumer) -> None:
        self.nc, self.consumer = nc, consumer
        self._next = f"{API}.CONSUMER.MSG.NEXT.{consumer.stream}.{consumer.durable}"
        self._inbox = nc.new_inbox()
        self._requests = itertools.count()
        self.pulls = 0
        """Pull requests sent so far."""
        self._sub: Subscription | None = None
        self._pin: str | None = None
        self._ended_by: tuple[str, str] | None = None
        # The server hands out at most max_ack_pending messages, plus one status per request.
        self._received: asyncio.Queue[Msg] = asyncio.Queue(maxsize=2 * consumer.max_ack_pending + 64)

    async def start(self) -> None:
        """Open the inbox."""
        if self._sub is None:
            self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_msg)

    async def _on_msg(self, msg: Msg) -> None:
        try:
            self._received.put_nowait(msg)
        except asyncio.QueueFull:  # never with a server keeping max_ack_pending: redelivered after the ack wait
            log.error("%s: the inbox is full; a message is dropped", self.consumer.durable)

    async def close(self) -> None:
        """Close the inbox (what it still holds is redelivered after the ack wait)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def batch(self, size: int, wait_s: float) -> list[Msg]:
        """Up to ``size`` messages: what is there now, else what comes first within ``wait_s``.

        One request (``no_wait`` with ``expires``: the server waits for the first message, sends what
        it has then and ends the request) unless another client's pull waits on the consumer, as the
        other replicas' do: then the server refuses ``no_wait`` at once (408 Requests Pending), and
        this waits for the first message in line with them, then pulls the rest with a
        :data:`REST_WAIT_S` expiry (the server sends what it has, then ends the request). Empty when
        another client holds the pin or nothing came."""
        wait = int(wait_s * NANOS)
        msgs = await self._request({"batch": size, "no_wait": True, "expires": wait}, size, wait_s)
        if msgs or self._ended_by != REQUESTS_PENDING:
            return msgs
        first = await self._request({"batch": 1, "expires": wait}, 1, wait_s)
        if not first or size == 1:
            return first
        return first + await self._request({"batch": size - 1, "expires": int(REST_WAIT_S * NANOS)}, size - 1, wait_s)

    async def unpin(self) -> bool:
        """Let the next pull of any client (this one too) take the pin; whether the server did."""
        verb = f"CONSUMER.UNPIN.{self.consumer.stream}.{self.consumer.durable}"
        try:
            await _api(self.nc, verb, {"group": GROUP})
        except Exception as exc:  # noqa: BLE001 - kept pinned: the next pulls carry the pin id
            log.warning("%s: could not unpin (%s); still pinned", self.consumer.durable, exc)
            return False
        self._pin = None
        return True

    async def _request(self, request: dict[str, Any], size: int, wait_s: float) -> list[Msg]:
        """Send one pull request (with the pin id this client holds, if any); messages until ``size``
        came or a status ended a request."""
        assert self._sub is not None, "start() first"
        body = {**request, "group": GROUP, **({"id": self._pin} if self._pin else {})}
        self.pulls += 1
        reply = f"{self._inbox}.{next(self._requests)}"  # its own, so a late status of an earlier
        # request (one given up on here) cannot end this one; an earlier request's late messages count
        await self.nc.publish(self._next, json.dumps(body).encode(), reply=reply)
        msgs: list[Msg] = []
        self._ended_by = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s + 2.0):
                while len(msgs) < size:
                    msg = await self._received.get()
                    headers = msg.headers or {}
                    status = headers.get("Status")
                    if status is None:
                        self._pin = headers.get(PIN_HEADER) or self._pin
                        msgs.append(msg)
                        continue
                    if msg.subject != reply:
                        continue
                    self._ended_by = (status, headers.get("Description", ""))
                    if status == "423":  # the pin went to another client (this one stopped pulling)
                        self._pin = None
                    elif status == "503" and not msgs:  # no consumer answers: gone, or JetStream away
                        raise ConsumerUnavailable(f"{self.consumer.durable}: no responders (503)")
                    elif status not in ("404", "408", "409"):
                        log.warning("%s: a pull ended with %s %s", self.consumer.durable, status, headers)
                    break
        return msgs

    @property
    def pin(self) -> str | None:
        """The pin id this client holds, as the last message said (``None``: not pinned)."""
        return self._pin
