"""The pull requests of one client on a pinned consumer: the one open, one given up on, what ends each.

Each request has its own reply subject under the puller's one inbox (:class:`PullRequests` names them), so
a late status of an earlier request cannot end a later one. A request ends with a status (its expiry: 408;
the pin taken by another client: 423) or, silently, once it delivered its ``batch``. A new leader of the
consumer (its advisory) tells its predecessor's waiting requests so (409) only when it had heard of them,
which a request sent while the cluster was split or a node paused may miss: then nothing came for a
request's whole life (30 s) after the fault healed. So an election makes the open request uncertain at
once, as an overdue one is: given up on, it may still deliver until its late status comes, a reconnect,
or the pin's timeout. A deletion of the consumer (its advisory) ends every request sent before it for
sure, where no status may come either: the next one is refused (503).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from services.dispatcher.fold.pinned.consumer import API, GROUP, NANOS, ConsumerUnavailable, PinnedConsumer

log = logging.getLogger(__name__)
STATUS_GRACE_S = 5.0
"""How long after its expiry a request's status may still come before it is presumed gone."""


class PullRequests:
    """The pull requests one client sends on ``consumer``, each replied to under ``inbox``: which is open,
    which was given up on and may still deliver, and the consumer's elections and deletions heard since
    each was sent."""

    def __init__(self, nc: NatsClient, consumer: PinnedConsumer, inbox: str) -> None:
        self.nc, self.consumer, self.inbox = nc, consumer, inbox
        self._next = f"{API}.CONSUMER.MSG.NEXT.{consumer.stream}.{consumer.durable}"
        self._numbers = itertools.count()
        self.pulls = 0
        """Pull requests sent so far."""
        self.elections = 0
        """Leader elections of the consumer heard so far (each ends the requests sent before it)."""
        self.deletions = 0
        """Deletions of the consumer heard so far (each ends every request sent before it, for sure)."""
        self.open: PullRequest | None = None
        self.uncertain: PullRequest | None = None
        """A request presumed gone without its status: it may still deliver until its late status
        comes, a reconnect, the pin moving on, or its ``unsure_until`` passes."""

    async def on_elected(self, msg: Msg) -> None:
        """The consumer's ``LEADER_ELECTED`` advisory."""
        self.elections += 1

    async def on_deleted(self, msg: Msg) -> None:
        """The consumer's ``DELETED`` advisory."""
        self.deletions += 1

    async def send(self, size: int, expires_s: float, pin: str | None) -> None:
        """Open a pull request for ``size`` messages lasting ``expires_s`` (with the client's ``pin`` id)."""
        reply = f"{self.inbox}.{next(self._numbers)}"
        body = {
            "batch": size,
            "expires": int(expires_s * NANOS),
            "group": GROUP,
            **({"id": pin} if pin else {}),
        }
        self.pulls += 1
        presumed_gone_at = asyncio.get_running_loop().time() + expires_s + STATUS_GRACE_S
        self.open = PullRequest(reply, size, presumed_gone_at, self.reconnects(), self.elections, self.deletions)
        await self.nc.publish(self._next, json.dumps(body).encode(), reply=reply)

    def delivered(self) -> None:
        """One message came: counted to the open request, which ends once it delivered its batch."""
        if self.open is not None:
            self.open.left -= 1
            if self.open.left <= 0:  # it delivered its batch: it ends without a status
                self.open = None

    def ended(self, subject: str, status: str, headers: Mapping[str, str]) -> bool:
        """A ``status`` to the request replied to on ``subject``: the request it ends; whether the pin
        went to another client (423). A refusal for want of a consumer (503) raises
        :class:`~services.dispatcher.fold.pinned.consumer.ConsumerUnavailable`."""
        if self.uncertain is not None and subject == self.uncertain.reply:
            self.uncertain = None  # the late status of a request given up on: it has ended
            return status == "423"
        if self.open is None or subject != self.open.reply:
            return False  # an earlier request's, given up on
        self.open = None
        if status == "423":  # the pin went to another client (this one stopped pulling)
            self.uncertain = None
            return True
        if status == "503":  # no consumer answers: gone, or JetStream away
            raise ConsumerUnavailable(f"{self.consumer.durable}: no responders (503)")
        if status not in ("404", "408", "409"):
            log.warning("%s: a pull ended with %s %s", self.consumer.durable, status, headers)
        return False

    def unsure(self) -> bool:
        """Whether a request given up on may still deliver. Resolved by its late status
        (:meth:`ended`), a reconnect (the server dropped it with the old connection), or time: by
        ``unsure_until`` the server has expired it by its own clock (a paused server or process
        included) and the pin's timeout has passed."""
        request = self.uncertain
        if request is None:
            return False
        gone = self.reconnects() != request.reconnects or request.deletions != self.deletions
        if gone or asyncio.get_running_loop().time() >= request.unsure_until:
            self.uncertain = None
            return False
        return True

    def give_up(self, now: float, force: bool = False, why: str = "a pull's end is overdue") -> None:
        """Forget the open request once its status is overdue (or ``force``): gone with a reconnect
        (the server dropped it with the old connection), else presumed gone but uncertain (the puller
        is not idle until a reconnect or the pin moving on)."""
        request = self.open
        if request is None or (now < request.presumed_gone_at and not force):
            return
        if self.reconnects() == request.reconnects:
            request.unsure_until = now + self.consumer.pin_timeout_s
            log.warning("%s: %s; the pin is kept until the pull's status comes or for %g s",
                        self.consumer.durable, why, self.consumer.pin_timeout_s)  # fmt: skip
            self.uncertain = request
        self.open = None

    def reconnects(self) -> int:
        """How often the connection was re-made (a request sent before is gone with the old one)."""
        return int(self.nc.stats.get("reconnects", 0))


@dataclass(slots=True)
class PullRequest:
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
