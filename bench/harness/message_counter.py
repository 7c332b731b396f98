"""Every message a NATS server routes, counted by kind: a core subscriber on ``>``.

What the platform costs NATS, as the issue's budgets count it: JetStream API requests by verb (pull
requests, consumer and stream info, direct gets), what comes back (replies, the messages a pull
delivers, pull statuses and heartbeats), acks, the server's advisories, KV writes and the
application's own publishes. :meth:`MessageCounter.window` counts one stretch of time, so a bench
or a test compares what one job or ten idle seconds cost.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

API = "$JS.API."
FOLD_DURABLE = "dispatcher-fold-"
"""The fold partitions' consumers on JOBS, whose pulls a breakdown names apart (an SSE catch-up's are not theirs)."""
API_KINDS = {
    "CONSUMER.MSG.NEXT.": "pull request",
    "CONSUMER.INFO.": "consumer info",
    "CONSUMER.CREATE.": "consumer create",
    "CONSUMER.DURABLE.CREATE.": "consumer create",
    "CONSUMER.DELETE.": "consumer delete",
    "CONSUMER.UNPIN.": "consumer unpin",
    "STREAM.INFO.": "stream info",
    "STREAM.MSG.GET.": "stream msg get",
    "DIRECT.GET.": "direct get",
    "STREAM.NAMES": "stream names",
}


def kind_of(subject: str, reply: str, headers: dict[str, str] | None) -> str:
    """The category a message is counted under.

    A message a consumer delivers is routed to its inbox but carries its stored subject, and its reply
    is the ack subject: so a delivery is told by its reply, whatever its subject.
    """
    if reply.startswith("$JS.ACK."):
        return "delivery"
    if subject.startswith("_INBOX.") or subject.startswith("_R_."):
        status = (headers or {}).get("Status", "")
        if status == "100":
            return "pull heartbeat"
        if status:
            return "pull status"
        return "reply"
    if subject.startswith("$JS.ACK."):
        return "ack"
    if subject.startswith(API):
        rest = subject[len(API) :]
        for prefix, name in API_KINDS.items():
            if rest.startswith(prefix):
                return name
        return "other api"
    if subject.startswith("$JS.EVENT.ADVISORY."):
        return "advisory"
    if subject.startswith("$JS.EVENT."):
        return "metric event"
    if subject.startswith("$JS.FC."):
        return "flow control"
    if subject.startswith("$KV."):
        return "kv write"
    if subject.startswith("$"):
        return "other system"
    return "stored publish" if reply else "core publish"


def bucket_of(subject: str, reply: str = "") -> str:
    """A subject with its ids cut off, to say where a kind of message comes from (a delivery: its consumer)."""
    if reply.startswith("$JS.ACK."):
        return ".".join(reply.split(".")[:4])
    if subject.startswith(("_INBOX.", "_R_.")):
        return "_INBOX"
    if subject.startswith(API):
        parts = subject.split(".")
        if subject.startswith(f"{API}CONSUMER.MSG.NEXT.") and parts[-1].startswith(FOLD_DURABLE):
            return ".".join(parts[:6]) + f".{FOLD_DURABLE}*"  # the fold's partitions pull on JOBS itself
        return ".".join(parts[:6]) if parts[2] == "CONSUMER" or parts[3] == "MSG" else ".".join(parts[:5])
    if subject.startswith("$JS.ACK."):
        parts = subject.split(".")
        return ".".join(parts[:4]) if len(parts) > 4 else subject
    if subject.startswith("$KV."):
        return ".".join(subject.split(".")[:2])
    if subject.startswith("$JS.EVENT.ADVISORY."):
        return ".".join(subject.split(".")[:5])
    if subject.startswith("$"):
        return ".".join(subject.split(".")[:3])
    return subject.split(".")[0] + (".*." + subject.split(".")[-1] if subject.startswith("jobs.") else "")


@dataclass
class Tally:
    """What a stretch of time carried: counts by kind, and by kind and source (:func:`bucket_of`)."""

    kinds: Counter[str] = field(default_factory=Counter)
    sources: Counter[tuple[str, str]] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Every message counted."""
        return sum(self.kinds.values())

    def add(self, kind: str, source: str) -> None:
        """Count one message."""
        self.kinds[kind] += 1
        self.sources[(kind, source)] += 1

    def minus(self, other: Tally) -> Tally:
        """What this tally holds beyond ``other`` (an earlier snapshot of the same counter)."""
        return Tally(self.kinds - other.kinds, self.sources - other.sources, self.seconds - other.seconds)

    def copy(self) -> Tally:
        """A snapshot."""
        return Tally(Counter(self.kinds), Counter(self.sources), self.seconds)

    def breakdown(self, top: int = 12) -> str:
        """``total: kind n, kind n, …`` and the heaviest sources, for a report or an assertion message."""
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.kinds.most_common())
        sources = ", ".join(f"{kind} {src} {n}" for (kind, src), n in self.sources.most_common(top))
        return f"{self.total} messages: {kinds}; most from: {sources}"


class MessageCounter:
    """A core subscription on ``>`` of its own connection, counting every message the server routes.

    Its own connection sends no message (PING/PONG are no messages), so it counts nothing of its own.
    """

    def __init__(self) -> None:
        self.tally = Tally()
        self.observers: list[Callable[[Msg], None]] = []
        """Called with each message counted (a harness that waits for a message it sees, e.g. an ack)."""
        self._nc: Client | None = None
        self._sub: Subscription | None = None

    async def start(self, url: str, **options: Any) -> None:
        """Connect (``options``: nats-py's, e.g. the operator's user, the one that may watch ``>``) and
        subscribe; counting starts once the server has the interest (a flush)."""
        self._nc = await nats.connect(url, name="message-counter", pending_size=64 * 1024 * 1024, **options)
        self._sub = await self._nc.subscribe(">", cb=self._count, pending_msgs_limit=1_000_000)
        await self._nc.flush()

    async def _count(self, msg: Msg) -> None:
        self.tally.add(kind_of(msg.subject, msg.reply, msg.headers), bucket_of(msg.subject, msg.reply))
        for observe in self.observers:
            observe(msg)

    async def settle(self) -> None:
        """Count what the server sent up to now (a round trip, then the queued callbacks)."""
        assert self._nc is not None
        await self._nc.flush()
        sub: Any = self._sub
        while sub is not None and sub._pending_queue.qsize():  # noqa: ASYNC110 - nats-py's callback task drains it
            await asyncio.sleep(0.005)

    @asynccontextmanager
    async def window(self) -> AsyncIterator[Tally]:
        """Count what happens inside the ``async with``: the yielded tally is filled in at its end."""
        await self.settle()
        before, start = self.tally.copy(), time.monotonic()
        result = Tally()
        try:
            yield result
        finally:
            await self.settle()
            counted = self.tally.minus(before)
            result.kinds, result.sources = counted.kinds, counted.sources
            result.seconds = time.monotonic() - start

    async def stop(self) -> None:
        """Unsubscribe and close."""
        if self._nc is not None:
            await self._nc.close()
            self._nc = None


@asynccontextmanager
async def counting(url: str) -> AsyncIterator[MessageCounter]:
    """A started :class:`MessageCounter`, stopped at the end."""
    counter = MessageCounter()
    await counter.start(url)
    try:
        yield counter
    finally:
        await counter.stop()
