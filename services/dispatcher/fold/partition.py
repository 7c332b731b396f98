"""One partition of the fold (a set of JOBS' slots), folded a batch at a time by the replica that holds its pin.

The partition's durable consumer on JOBS is pinned to one replica at a time
(:mod:`~services.dispatcher.fold.pinned.pull`). The holder keeps a pull open, takes what has come as a
batch (up to ``fold_batch`` events), folds it (:mod:`~services.dispatcher.fold.batch`: per job in
stream order, one KV write per job and batch) and acks it (:mod:`~services.dispatcher.fold.acks`: a
request once it has nothing more, not per batch). It keeps the pin for ``fold_pin_hold_s``, then lets
its open pull run out and unpins, so the next batch goes to whichever replica asks first
(the partitions spread over the replicas that way). A partition that got nothing for
:data:`QUIET_AFTER_S` unpins the same way and then waits, pinned to none, in a pull of one event
lasting :data:`IDLE_PULL_S` (issue 34: an idle fold's pulls); the event that comes ends it and pins
this replica, so a holder never has a long pull open and no hand-over waits for one. While one pin id
lasts, no other replica has folded this partition's jobs, so the records it wrote are still current:
it keeps them (up to ``fold_record_cache`` per partition) and reads KV only for jobs it has not seen;
a new pin id drops them (every write is a compare-and-set on the revision in any case).

The partition's consumer is made, and pulled so that no failure ends the fold, by
:mod:`~services.dispatcher.fold.partition_pulls`; each batch is folded and acked, or given back, by
:class:`~services.dispatcher.fold.acks.BatchSettler`. At a new pin the holder first gathers what a dead
holder left unacknowledged (:mod:`~services.dispatcher.fold.handover`), unless its first deliveries come
right after its own last ones: no one was delivered anything since. A replica that stops with every
batch settled gives back what its open pull still brings and unpins at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import InitVar, dataclass, field, replace

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from contracts import streams
from services.common.http.nats_failover import unwatched
from services.common.nats.connection import cancel_requested
from services.common.nats.publish import until_answered
from services.dispatcher.consumers import ConsumerGuard
from services.dispatcher.fold.acks import STOP_GRACE_S, BatchAcks, BatchSettler
from services.dispatcher.fold.batch import BatchFold
from services.dispatcher.fold.batch_records import RecordCache
from services.dispatcher.fold.handover import next_after_let_go
from services.dispatcher.fold.linger import linger, lingers
from services.dispatcher.fold.partition_pulls import FETCH_WAIT_S, PartitionPulls
from services.dispatcher.fold.partitions import SERIAL_DURABLE, fold_start
from services.dispatcher.fold.reactions import Reactions
from services.dispatcher.fold.serial import FOLD_LABEL, EventConsumer, FoldDurable
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.subscribers import Consumer

HOLD_S = 0.25
"""How long a held ack waits for the next batch (on the open request: no pull more) before it goes as a
request (:mod:`~services.dispatcher.fold.acks`); a replica that dies with one held leaves its pin to
time out, as one that dies with a batch in hand."""
QUIET_AFTER_S = 2.0
"""A partition that got nothing for this long lets go of its pin and waits with :data:`IDLE_PULL_S` pulls."""
IDLE_PULL_S = 30.0
"""How long the pull of a quiet, unpinned partition waits: it asks for one event, so it ends as soon as one
comes (pinning this replica) and no hand-over ever waits for it (an idle partition: 2 messages per 30 s)."""


@dataclass
class PartitionFold(FoldDurable):
    """One partition of the fold, folded a batch at a time while this replica holds its pin."""

    nc: NatsClient
    settings: DispatcherSettings
    guard: ConsumerGuard
    reactions: Reactions
    stream: str
    partition: int
    unavailable: Callable[[], None] = unwatched
    """Told each time NATS failed a pull, a batch's fold or its acks (the replica's stuck-server watch)."""
    refold_later: Callable[[str, str], Awaitable[None]] | None = None
    """Told of each job with a redelivered event (:class:`~services.dispatcher.fold.refold.Refolds`)."""
    floor: InitVar[int | None] = None
    """Where its consumer starts if made now (:class:`~services.dispatcher.fold.partition_pulls.PartitionPulls`)."""
    durable: str = field(init=False)
    _pulls: PartitionPulls = field(init=False)
    _batches: BatchSettler = field(init=False)
    _let_go_at: int | None = None
    """The consumer sequence of the last delivery to this replica when it last let go of the pin with
    everything settled (``None`` since it was pinned again, or never)."""

    def __post_init__(self, floor: int | None) -> None:
        s = self.settings
        self._pulls = PartitionPulls(self.nc, s, self.stream, self.partition, self.unavailable, floor)
        self.durable = self._pulls.durable
        acks = BatchAcks(self.nc, min(5.0, 0.1 * s.event_ack_wait_s + 0.5))
        self._batches = BatchSettler(acks, self.durable, s.event_ack_wait_s, self.unavailable, self._pulls.raise_floor)

    @property
    def consumer(self) -> Consumer:
        """Bounded on the server at ``fold_max_deliver``, not ``event_max_deliver``: here only a batch given
        back (an outage past its deadline, a holder that died) counts a delivery; a failing event is
        retried in place (:class:`~services.dispatcher.fold.batch.BatchFold`, ``event_max_deliver`` tries)."""
        return Consumer(self.stream, self.durable, replace(self.policy, max_deliver=self.settings.fold_max_deliver))

    async def start(self) -> None:
        """Create (or re-make) the pinned consumer and open this replica's inbox for it."""
        await self._pulls.start()

    async def run(self) -> None:
        """Fold batches until cancelled; a cancel lets the batch in hand finish (for up to
        :data:`STOP_GRACE_S`), then gives the pin back if nothing is left unsettled."""
        pulls, puller, batches = self._pulls, self._pulls.puller, self._batches
        assert puller is not None, "start() first"
        cache = RecordCache(self.settings.fold_record_cache)
        folder = BatchFold(self.reactions, self.guard, self.policy, self.durable, FOLD_LABEL, cache, self.refold_later)
        self._let_go_at = await pulls.unpin_if_dead()  # with nothing unacknowledged: as after a let-go
        pinned_at, releasing = time.monotonic(), False
        quiet_at = time.monotonic() + QUIET_AFTER_S
        try:
            while True:
                if cancel_requested():  # nats-py's requests can swallow a cancel (3.11's wait_for)
                    raise asyncio.CancelledError
                quiet = time.monotonic() >= quiet_at and batches.settled
                if quiet and puller.pin is None and puller.idle:  # one event, whenever it comes
                    msgs = await pulls.pull(more=True, size=1, wait_s=IDLE_PULL_S)
                else:
                    releasing = releasing or (quiet and puller.pin is not None)
                    hold = batches.acks.held is not None and puller.requesting
                    msgs = await pulls.pull(
                        more=not (releasing or quiet), wait_s=HOLD_S if hold else FETCH_WAIT_S
                    )  # quiet: let it run out
                if not msgs and batches.acks.held is not None:  # nothing more came: the held ack goes
                    await batches.confirmed()
                if msgs:
                    quiet_at = time.monotonic() + QUIET_AFTER_S
                    if cache.pin != puller.pin:  # another replica may have folded these jobs meanwhile
                        cache.reset(puller.pin)
                        pinned_at, releasing = time.monotonic(), False
                        if not next_after_let_go(self._let_go_at, msgs):
                            msgs += await pulls.leftovers(len(msgs))
                    self._let_go_at = None
                    await batches.release()  # folded before these came: acked now, not after their linger
                    arrived = time.monotonic()
                    if lingers(msgs):  # requests more unless the pin is held long enough (events came: not quiet)
                        pin_due = time.monotonic() - pinned_at >= self.settings.fold_pin_hold_s
                        msgs += await self._linger(len(msgs), more=not pin_due)
                    await batches.complete_shielded(folder, msgs, puller, arrived)
                    releasing = time.monotonic() - pinned_at >= self.settings.fold_pin_hold_s
                if releasing and puller.idle:  # held long enough (or quiet), and nothing of this pin in flight
                    if (
                        batches.settled
                        and puller.pin is not None
                        and await batches.confirmed()
                        and await puller.unpin()
                    ):
                        cache.reset(None)
                        self._let_go_at = puller.last_delivery
                    elif puller.pin is not None:  # not let go: pulls of a second again for a while
                        quiet_at = time.monotonic() + QUIET_AFTER_S
                    releasing = False
        finally:
            with contextlib.suppress(Exception):
                if batches.settled and puller.pin is not None:
                    await asyncio.wait_for(batches.let_go(puller), STOP_GRACE_S)
                elif batches.acks.held is not None:  # a folded event: acked, whatever else is cut short
                    await asyncio.wait_for(batches.acks.confirm(), STOP_GRACE_S)
            await puller.close()

    async def _linger(self, held: int, more: bool) -> list[Msg]:
        """More events for a batch of only lingering ones (:func:`~services.dispatcher.fold.linger.linger`).
        A request that runs out meanwhile is followed by another (``more``), so where the open one ended
        does not split a burst; a partition held for ``fold_pin_hold_s`` lingers on the open request
        alone, not to hold up the hand-over."""
        room = self.settings.fold_batch - held
        return await linger(lambda n, wait_s: self._pulls.pull(more=more, size=n, wait_s=wait_s), room,
                            self.settings.fold_linger_s, renew=more)  # fmt: skip


async def fold_consumers(
    nc: NatsClient,
    settings: DispatcherSettings,
    guard: ConsumerGuard,
    reactions: Reactions,
    made: set[int],
    unavailable: Callable[[], None] = unwatched,
    refold_later: Callable[[str, str], Awaitable[None]] | None = None,
) -> list[EventConsumer] | list[PartitionFold]:
    """One :class:`PartitionFold` per partition of JOBS' slots (:mod:`~services.dispatcher.fold.partitions`),
    starting where the fold got to if its consumer is made now, each telling ``unavailable`` of NATS failing it, or the
    serial ``dispatcher-jobs`` on JOBS' ``jobs.>`` (one event at a time) when ``fold_partitions`` is 0."""
    s, ns, js = settings, settings.ns, nc.jetstream()
    if not s.fold_partitions:
        serial = EventConsumer(js, s, guard, ns.stream(streams.JOBS), ns.subject("jobs.>"), SERIAL_DURABLE,
                               lambda msg: reactions.on_job_event(msg.data), unavailable)  # fmt: skip
        return [serial]
    floor = await until_answered(lambda: fold_start(js, ns, s.fold_partitions, made), "find where the fold starts")
    return [PartitionFold(nc, s, guard, reactions, ns.stream(streams.JOBS), p, unavailable, refold_later, floor)
            for p in range(s.fold_partitions)]  # fmt: skip
