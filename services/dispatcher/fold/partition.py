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

A replica that dies holding a batch keeps the pin until its events are due for redelivery
(``event_ack_wait_s`` + :data:`PIN_MARGIN_S`), so the next holder gets them before anything newer
(in no particular order: it gathers every unacknowledged event before folding,
:mod:`~services.dispatcher.fold.handover`, unless its first deliveries come right after its own last
ones: no one was delivered anything since);
one that stops with every batch settled gives back what its open pull still brings and unpins at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from contracts import streams
from services.common.http.nats_failover import unwatched
from services.common.nats.connection import cancel_requested, log_failure
from services.common.nats.publish import until_answered
from services.dispatcher.consumers import ConsumerGuard
from services.dispatcher.fold.acks import BatchAcks
from services.dispatcher.fold.batch import BatchFold
from services.dispatcher.fold.batch_records import RecordCache
from services.dispatcher.fold.handover import gather_leftovers, next_after_let_go, unpin_if_dead
from services.dispatcher.fold.linger import linger, lingers
from services.dispatcher.fold.partitions import SERIAL_DURABLE, acked_to, fold_durable, fold_start, partition_filters
from services.dispatcher.fold.pinned.consumer import ConsumerUnavailable, PinnedConsumer
from services.dispatcher.fold.pinned.pull import PinnedPull
from services.dispatcher.fold.reactions import Reactions
from services.dispatcher.fold.serial import FOLD_LABEL, EventConsumer, FoldDurable
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.subscribers import Consumer

log = logging.getLogger(__name__)
FETCH_WAIT_S = 1.0
"""How long a pull request of a busy partition waits (and an unpin waits for the open one to run out);
a long wait here would delay every hand-over of the pin (issue 34)."""
HOLD_S = 0.25
"""How long a held ack waits for the next batch (on the open request: no pull more) before it goes as a
request (:mod:`~services.dispatcher.fold.acks`); a replica that dies with one held leaves its pin to
time out, as one that dies with a batch in hand."""
QUIET_AFTER_S = 2.0
"""A partition that got nothing for this long lets go of its pin and waits with :data:`IDLE_PULL_S` pulls."""
IDLE_PULL_S = 30.0
"""How long the pull of a quiet, unpinned partition waits: it asks for one event, so it ends as soon as one
comes (pinning this replica) and no hand-over ever waits for it (an idle partition: 2 messages per 30 s)."""
PIN_MARGIN_S = 2.0
"""The pin outlasts the ack wait by this much (a dead holder's events are due before the pin moves)."""
STOP_GRACE_S = 5.0
"""How long a stop lets a partition finish the batch in hand (fold, ack)."""
UNAVAILABLE_BACKOFF_S = 1.0
"""How long a partition waits after a pull found no consumer, before it makes the consumer again."""


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
    floor: int | None = None
    """Where its consumer starts if made now (JOBS keeps what was folded): the fold's floor when this
    replica started (:func:`~services.dispatcher.fold.partitions.fold_start`), raised as the consumer's
    info shows it acknowledged further; ``None``: JOBS' first (a new deployment)."""
    durable: str = field(init=False)
    _pinned: PinnedConsumer | None = None
    _puller: PinnedPull | None = None
    _settled: bool = True
    """Whether every batch this replica pulled was acked or nak'ed (confirmed before the pin goes)."""
    _acks: BatchAcks = field(init=False)
    _let_go_at: int | None = None
    """The consumer sequence of the last delivery to this replica when it last let go of the pin with
    everything settled (``None`` since it was pinned again, or never)."""
    _folded_to: int = 0
    """The highest stream sequence of a batch this replica folded and acked (a batch nak'ed comes again first)."""

    def __post_init__(self) -> None:
        self.durable = fold_durable(self.partition)
        self._acks = BatchAcks(self.nc, min(5.0, 0.1 * self.settings.event_ack_wait_s + 0.5))

    @property
    def consumer(self) -> Consumer:
        """Bounded on the server at ``fold_max_deliver``, not ``event_max_deliver``: here only a batch given
        back (an outage past its deadline, a holder that died) counts a delivery; a failing event is
        retried in place (:class:`~services.dispatcher.fold.batch.BatchFold`, ``event_max_deliver`` tries)."""
        return Consumer(self.stream, self.durable, replace(self.policy, max_deliver=self.settings.fold_max_deliver))

    async def start(self) -> None:
        """Create (or re-make) the pinned consumer and open this replica's inbox for it."""
        s = self.settings
        self._pinned = PinnedConsumer(
            self.stream, self.durable, tuple(partition_filters(s.ns, self.partition, s.fold_partitions)),
            ack_wait_s=s.event_ack_wait_s,
            max_deliver=s.fold_max_deliver, max_ack_pending=s.fold_batch,
            pin_timeout_s=s.event_ack_wait_s + PIN_MARGIN_S,
        )  # fmt: skip
        self._raise_floor(await self._pinned.ensure(self.nc, self.floor))
        self._puller = PinnedPull(self.nc, self._pinned)
        await self._puller.start()

    async def run(self) -> None:
        """Fold batches until cancelled; a cancel lets the batch in hand finish (for up to
        :data:`STOP_GRACE_S`), then gives the pin back if nothing is left unsettled."""
        puller = self._puller
        assert puller is not None, "start() first"
        cache = RecordCache(self.settings.fold_record_cache)
        folder = BatchFold(self.reactions, self.guard, self.policy, self.durable, FOLD_LABEL, cache, self.refold_later)
        await self._unpin_if_dead()
        pinned_at, releasing = time.monotonic(), False
        quiet_at = time.monotonic() + QUIET_AFTER_S
        try:
            while True:
                if cancel_requested():  # nats-py's requests can swallow a cancel (3.11's wait_for)
                    raise asyncio.CancelledError
                quiet = time.monotonic() >= quiet_at and self._settled
                if quiet and puller.pin is None and puller.idle:  # one event, whenever it comes
                    msgs = await self._pull(puller, more=True, size=1, wait_s=IDLE_PULL_S)
                else:
                    releasing = releasing or (quiet and puller.pin is not None)
                    hold = self._acks.held is not None and puller.requesting
                    msgs = await self._pull(
                        puller, more=not (releasing or quiet), wait_s=HOLD_S if hold else FETCH_WAIT_S
                    )  # quiet: let it run out
                if not msgs and self._acks.held is not None:  # nothing more came: the held ack goes
                    await self._confirmed()
                if msgs:
                    quiet_at = time.monotonic() + QUIET_AFTER_S
                    if cache.pin != puller.pin:  # another replica may have folded these jobs meanwhile
                        cache.reset(puller.pin)
                        pinned_at, releasing = time.monotonic(), False
                        if not next_after_let_go(self._let_go_at, msgs):
                            msgs += await self._leftovers(puller, len(msgs))
                    self._let_go_at = None
                    await self._release()  # folded before these came: acked now, not after their linger
                    arrived = time.monotonic()
                    if lingers(msgs):  # requests more unless the pin is held long enough (events came: not quiet)
                        pin_due = time.monotonic() - pinned_at >= self.settings.fold_pin_hold_s
                        msgs += await self._linger(puller, len(msgs), more=not pin_due)
                    await self._complete_shielded(folder, msgs, puller, arrived)
                    releasing = time.monotonic() - pinned_at >= self.settings.fold_pin_hold_s
                if releasing and puller.idle:  # held long enough (or quiet), and nothing of this pin in flight
                    if self._settled and puller.pin is not None and await self._confirmed() and await puller.unpin():
                        cache.reset(None)
                        self._let_go_at = puller.last_delivery
                    elif puller.pin is not None:  # not let go: pulls of a second again for a while
                        quiet_at = time.monotonic() + QUIET_AFTER_S
                    releasing = False
        finally:
            with contextlib.suppress(Exception):
                if self._settled and puller.pin is not None:
                    await asyncio.wait_for(self._let_go(puller), STOP_GRACE_S)
                elif self._acks.held is not None:  # a folded event: acked, whatever else is cut short
                    await asyncio.wait_for(self._acks.confirm(), STOP_GRACE_S)
            await puller.close()

    async def _linger(self, puller: PinnedPull, held: int, more: bool) -> list[Msg]:
        """More events for a batch of only lingering ones (:func:`~services.dispatcher.fold.linger.linger`).
        A request that runs out meanwhile is followed by another (``more``), so where the open one ended
        does not split a burst; a partition held for ``fold_pin_hold_s`` lingers on the open request
        alone, not to hold up the hand-over."""
        room = self.settings.fold_batch - held
        return await linger(lambda n, wait_s: self._pull(puller, more=more, size=n, wait_s=wait_s), room,
                            self.settings.fold_linger_s, renew=more)  # fmt: skip

    async def _leftovers(self, puller: PinnedPull, held: int) -> list[Msg]:
        """At a new pin: every event a previous holder left unacknowledged, read for up to the pin's
        time-out (:func:`~services.dispatcher.fold.handover.gather_leftovers`). A pull that fails there is
        :meth:`_pull`'s, as anywhere: waited out, not the partition's end."""
        within_s = self.settings.event_ack_wait_s + PIN_MARGIN_S

        def pull(wait_s: float) -> Awaitable[list[Msg]]:
            return self._pull(puller, more=True, wait_s=wait_s)

        return await gather_leftovers(self.durable, held, within_s, self._unacknowledged, pull)

    async def _unacknowledged(self) -> int:
        """How many of the partition's events the consumer counts as delivered and not acknowledged."""
        info = await self.nc.jetstream().consumer_info(self.stream, self.durable)
        self._raise_floor(acked_to(info) + 1 if info.ack_floor else None)
        return info.num_ack_pending or 0

    def _raise_floor(self, floor: int | None) -> None:
        """The consumer acknowledged everything below ``floor``: one made again need not start lower."""
        if floor is not None:
            self.floor = max(self.floor or 0, floor)

    async def _let_go(self, puller: PinnedPull) -> None:
        """Give back what the open request still delivers (nak'ed: it comes again first, to whoever
        pulls next), then unpin."""
        if rest := await puller.drain(FETCH_WAIT_S + 1.0):
            await self._acks.nak(rest)
        await self._acks.confirm()
        await puller.unpin()

    async def _unpin_if_dead(self) -> None:
        """Free a partition left pinned to a replica that is gone (:mod:`~services.dispatcher.fold.handover`);
        with nothing unacknowledged, its first pin is taken as one after a let-go."""
        assert self._pinned is not None
        try:
            self._let_go_at = await unpin_if_dead(self.nc, self._pinned, look_again_s=FETCH_WAIT_S + 0.5)
        except Exception as exc:  # noqa: BLE001 - the pin's own timeout frees it all the same
            log.warning("%s: could not look for a dead pin (%s)", self.durable, exc)

    async def _pull(
        self, puller: PinnedPull, more: bool, size: int | None = None, wait_s: float = FETCH_WAIT_S
    ) -> list[Msg]:
        """The next batch (up to ``size``, ``fold_batch`` by default), or nothing (after a wait) when
        the pull failed."""
        try:
            return await puller.batch(size or self.settings.fold_batch, wait_s, more)
        except asyncio.CancelledError:
            raise
        except ConsumerUnavailable as exc:
            self.unavailable()
            log.warning("%s; making it again in %g s", exc, UNAVAILABLE_BACKOFF_S)
            await asyncio.sleep(UNAVAILABLE_BACKOFF_S)
            with contextlib.suppress(Exception):
                assert self._pinned is not None
                self._raise_floor(await self._pinned.ensure(self.nc, self.floor))
        except Exception as exc:  # noqa: BLE001 - a broken pull must not end the fold for good
            if cancel_requested():  # nats-py turns a cancel on a closed connection into an error
                raise asyncio.CancelledError from None
            if self.nc.is_closed:
                raise asyncio.CancelledError from None
            self.unavailable()
            log_failure(log, exc, "%s: pull failed; retrying", self.durable)
            await asyncio.sleep(0.5)
        return []

    async def _complete_shielded(self, folder: BatchFold, msgs: list[Msg], puller: PinnedPull, arrived: float) -> None:
        """:meth:`_complete`, which a cancel lets finish for up to :data:`STOP_GRACE_S`."""
        done = asyncio.ensure_future(self._complete(folder, msgs, puller, arrived))
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(done, STOP_GRACE_S)  # past it, redelivered after the ack wait
            if not done.done() or done.cancelled():
                self._settled = False
            raise
        except Exception as exc:  # noqa: BLE001 - never let a partition's fold end
            log_failure(log, exc, "%s: a batch failed", self.durable)

    async def _complete(self, folder: BatchFold, msgs: list[Msg], puller: PinnedPull, arrived: float) -> None:
        """Fold ``msgs`` and ack them. Folding is cut off at 80 % of the ack wait since the batch
        ``arrived`` (``time.monotonic()``; its linger included), before anyone else could be given these
        events; on any failure the batch is nak'ed, with every later event the
        open request delivers until it ends, so the next pull (still pinned here) gets them again, in
        order, before anything newer; when the server's answer to the acks or naks is unknown this
        replica stops pulling for the pin's timeout: by then the events are due for redelivery, and
        redeliveries come before newer events, whoever pulls."""
        ack_wait = self.settings.event_ack_wait_s
        deadline = arrived + 0.8 * ack_wait
        self._settled = False
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                await folder.fold(msgs, deadline)
            await self._acks.ack(msgs)
            self._settled = True
            self._folded_to = max([self._folded_to, *(msg.metadata.sequence.stream for msg in msgs)])
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            self.unavailable()
            log_failure(log, exc, "%s: a batch of %d events is given back to be redelivered", self.durable, len(msgs))
            folder.cache.reset(None)
            try:
                await self._acks.nak(msgs + await puller.drain(FETCH_WAIT_S + 1.0))
                self._settled = True
            except Exception:  # noqa: BLE001 - unknown: wait until they are due for redelivery anyway
                log.warning("%s: the server did not confirm the nak; pulling again in %g s", self.durable, ack_wait)
                await asyncio.sleep(ack_wait + PIN_MARGIN_S)
                self._settled = True
            return

    async def _release(self) -> None:
        """Send the held ack as a plain ack (:meth:`~services.dispatcher.fold.acks.BatchAcks.release`); one
        that cannot be sent is logged, not raised: its event comes back after the ack wait and folds to no
        change, while a raise would end the partition's fold."""
        try:
            await self._acks.release()
        except Exception as exc:  # noqa: BLE001 - the event comes back after the ack wait at worst
            self.unavailable()
            log.warning("%s: the held ack was not sent (%r)", self.durable, exc)

    async def _confirmed(self) -> bool:
        """Send the held ack as a request (:class:`~services.dispatcher.fold.acks.BatchAcks`): whether
        the server answered, so every ack sent is handled (the pin may be given up)."""
        try:
            await self._acks.confirm()
        except Exception as exc:  # noqa: BLE001 - the event comes back after the ack wait at worst
            self.unavailable()
            log.warning("%s: the server did not confirm the acks (%r)", self.durable, exc)
            return False
        if self._settled:  # every event it was given is acked, and no one else was given any while it
            self._raise_floor(self._folded_to + 1)  # held the pin (a new pin gathers what others left)
        return True


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
