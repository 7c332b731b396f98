"""A service's NATS connection, held by a server that cannot serve JetStream, moved to another.

A node cut off from the rest of its cluster keeps its clients: their TCP connections and PINGs are
fine, so nats-py never reconnects, yet every JetStream request through that node times out or is
refused (no quorum, no leader) for as long as the partition lasts, and a while after. The gateway
answered 503 to every submission for the whole of a 10 s partition and 7 s after it
(docs/operations.md, Faults). :class:`StuckServerWatch` is told of each request that failed for
want of NATS (:meth:`~StuckServerWatch.failed`, from the 503 handler of
:func:`~services.common.http.problem.install_error_handlers`; in the notifier from its SSE feeds,
their catch-ups and the webhook fan-out; in the dispatcher from its fold partitions and sweeps; in a
pool worker from its events' publishes); it then asks the server for the info of one stream the
connection's user may read (``$JS.API.STREAM.INFO``, answered by the stream's leader), one ask a
:data:`PROBE_EVERY_S` until one is answered. An ask fails when it times out, is refused, or says the
leader hears too few of its replicas (a leader cut off from the others answers so until it steps
down). Once the asks have failed for :data:`STUCK_AFTER_S` and another server is known, it makes the
client reconnect (``force_reconnect``: nats-py picks another server of its pool at random, so a move that
lands on the same server is followed by another). Nothing is sent while requests succeed; an outage
of the whole cluster (no leader anywhere) moves the connection at most once every
:data:`STUCK_AFTER_S`, which costs a reconnect and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import time

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import StreamInfo

from services.common.nats.connection import cancel_and_wait

log = logging.getLogger(__name__)
STUCK_AFTER_S = 3.0
"""How long the asks must have failed (the first to the last) before the connection moves; longer than
a stream leader's election after a node is lost (about 2 s)."""
PROBE_EVERY_S = 1.0
"""At most one ask a second, whatever the number of requests failing."""
PROBE_TIMEOUT_S = 2.0
FAILED_ASK: tuple[type[Exception], ...] = (
    TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
)
"""What an ask that this server cannot answer raises (any other answer, an error too, is an answer)."""
UNHEARD_NS = 3_000_000_000
"""A replica the leader has not heard for this long (nanoseconds: three of Raft's 1 s heartbeats) counts as
lost; nats-server itself marks it not current only after 10 s."""


def without_quorum(info: StreamInfo) -> bool:
    """Whether the stream's answer says it cannot store now: no leader, or a leader that has heard too
    few of its replicas lately (a leader cut off from the others answers for itself until it steps down,
    its replicas still "current" for 10 s)."""
    cluster = info.cluster
    if cluster is None:  # a single server: nothing to lose
        return False
    replicas = cluster.replicas or []
    heard = 1 + sum(1 for peer in replicas if peer.current and not peer.offline and (peer.active or 0) < UNHEARD_NS)
    return not cluster.leader or 2 * heard <= 1 + len(replicas)


def unwatched() -> None:
    """What a component tells of NATS failing it when no watch is on its connection (the default of
    every ``unavailable`` hook)."""


class StuckServerWatch:
    """Moves ``nc`` off a server whose JetStream has not answered for :data:`STUCK_AFTER_S`, judged by
    asking for the info of ``stream`` (a stream the connection's user may read the info of)."""

    def __init__(self, nc: NatsClient, stream: str) -> None:
        self.nc, self.stream = nc, stream
        self.moves = 0
        """Reconnects this watch made."""
        self._task: asyncio.Task[None] | None = None
        self._asked_at = -PROBE_EVERY_S

    def failed(self) -> None:
        """A request on the connection failed for want of NATS: ask the server until it answers or the
        asks have failed for :data:`STUCK_AFTER_S`, unless asking already, an ask was sent less than
        :data:`PROBE_EVERY_S` ago, or no other server is known (nowhere to move)."""
        if (self._task is not None and not self._task.done()) or time.monotonic() - self._asked_at < PROBE_EVERY_S:
            return
        if len(self.nc.servers) < 2 or not self.nc.is_connected:  # alone, or nats-py reconnects already
            return
        self._task = asyncio.create_task(self._ask_until_answered(), name="stuck-server-ask")

    async def stop(self) -> None:
        """Cancel the asks in flight."""
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def _ask_until_answered(self) -> None:
        """One ask every :data:`PROBE_EVERY_S` until one is answered; the connection moved once they
        have failed for :data:`STUCK_AFTER_S` (from the first one sent to the end of the last). A
        failure told once is enough: a service whose failures come seconds apart (an SSE feed's pull
        that misses its heartbeats, a consumer request timing out) is judged as soon as one whose
        requests fail every moment."""
        first_sent: float | None = None
        while True:
            if not self.nc.is_connected:  # nats-py moves already (or closes)
                return
            self._asked_at = sent = time.monotonic()
            if await self.answers():
                return
            first_sent = sent if first_sent is None else first_sent
            silent_s = time.monotonic() - first_sent
            if silent_s >= STUCK_AFTER_S:
                break
            await asyncio.sleep(max(0.0, sent + PROBE_EVERY_S - time.monotonic()))
        server = self.nc.connected_url.netloc if self.nc.connected_url else "?"
        log.warning("NATS server %s has not served JetStream for %.1f s (cut off from its cluster?); "
                    "moving to another server", server, silent_s)  # fmt: skip
        self.moves += 1
        await self.nc.force_reconnect()

    async def answers(self) -> bool:
        """Whether the server answers for the stream, with a quorum behind it (the connection's user must
        be allowed the stream's info: a refused publish never has an answer, and would count as a failed
        ask)."""
        try:
            info = await self.nc.jetstream(timeout=PROBE_TIMEOUT_S).stream_info(self.stream)
        except FAILED_ASK:
            return False
        except Exception:  # noqa: BLE001 - any other answer: this server's JetStream answers
            return True
        return not without_quorum(info)
