"""A fold partition's consumer as this replica pulls it: made where the fold got to, pulled without failing.

The partition's durable consumer on JOBS (:class:`~services.dispatcher.fold.pinned.consumer.PinnedConsumer`)
is made when the replica starts; one made now starts at the fold's floor (JOBS keeps what was folded), and
a pull that finds it gone (503) backs off and makes it again from the floor as raised since. Any other
failure of a pull is waited out, never the partition's end. A replica that dies holding a batch keeps the
pin until its events are due for redelivery (``event_ack_wait_s`` + :data:`PIN_MARGIN_S`), so the next
holder gets them before anything newer (in no particular order: it gathers every unacknowledged event
before folding, :meth:`PartitionPulls.leftovers`); a starting replica frees a partition left pinned to
one that is gone (:func:`~services.dispatcher.fold.handover.unpin_if_dead`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from services.common.http.nats_failover import unwatched
from services.common.nats.connection import cancel_requested, log_failure
from services.dispatcher.fold.handover import gather_leftovers, unpin_if_dead
from services.dispatcher.fold.partitions import acked_to, fold_durable, partition_filters
from services.dispatcher.fold.pinned.consumer import ConsumerUnavailable, PinnedConsumer
from services.dispatcher.fold.pinned.pull import PinnedPull
from services.dispatcher.settings import DispatcherSettings

log = logging.getLogger(__name__)
FETCH_WAIT_S = 1.0
"""How long a pull request of a busy partition waits (and an unpin waits for the open one to run out);
a long wait here would delay every hand-over of the pin (issue 34)."""
PIN_MARGIN_S = 2.0
"""The pin outlasts the ack wait by this much (a dead holder's events are due before the pin moves)."""
UNAVAILABLE_BACKOFF_S = 1.0
"""How long a partition waits after a pull found no consumer, before it makes the consumer again."""


@dataclass
class PartitionPulls:
    """Partition ``partition``'s consumer on ``stream`` and this replica's :class:`PinnedPull` on it; each
    failure of a pull is told to ``unavailable`` (the replica's stuck-server watch)."""

    nc: NatsClient
    settings: DispatcherSettings
    stream: str
    partition: int
    unavailable: Callable[[], None] = unwatched
    floor: int | None = None
    """Where its consumer starts if made now (JOBS keeps what was folded): the fold's floor when this
    replica started (:func:`~services.dispatcher.fold.partitions.fold_start`), raised as the consumer's
    info shows it acknowledged further; ``None``: JOBS' first (a new deployment)."""
    durable: str = field(init=False)
    pinned: PinnedConsumer | None = None
    puller: PinnedPull | None = None

    def __post_init__(self) -> None:
        self.durable = fold_durable(self.partition)

    async def start(self) -> None:
        """Create (or re-make) the pinned consumer and open this replica's inbox for it."""
        s = self.settings
        self.pinned = PinnedConsumer(
            self.stream, self.durable, tuple(partition_filters(s.ns, self.partition, s.fold_partitions)),
            ack_wait_s=s.event_ack_wait_s,
            max_deliver=s.fold_max_deliver, max_ack_pending=s.fold_batch,
            pin_timeout_s=s.event_ack_wait_s + PIN_MARGIN_S,
        )  # fmt: skip
        self.raise_floor(await self.pinned.ensure(self.nc, self.floor))
        self.puller = PinnedPull(self.nc, self.pinned)
        await self.puller.start()

    async def pull(self, more: bool, size: int | None = None, wait_s: float = FETCH_WAIT_S) -> list[Msg]:
        """The next batch (up to ``size``, ``fold_batch`` by default), or nothing (after a wait) when
        the pull failed."""
        assert self.puller is not None, "start() first"
        try:
            return await self.puller.batch(size or self.settings.fold_batch, wait_s, more)
        except asyncio.CancelledError:
            raise
        except ConsumerUnavailable as exc:
            self.unavailable()
            log.warning("%s; making it again in %g s", exc, UNAVAILABLE_BACKOFF_S)
            await asyncio.sleep(UNAVAILABLE_BACKOFF_S)
            with contextlib.suppress(Exception):
                assert self.pinned is not None
                self.raise_floor(await self.pinned.ensure(self.nc, self.floor))
        except Exception as exc:  # noqa: BLE001 - a broken pull must not end the fold for good
            if cancel_requested():  # nats-py turns a cancel on a closed connection into an error
                raise asyncio.CancelledError from None
            if self.nc.is_closed:
                raise asyncio.CancelledError from None
            self.unavailable()
            log_failure(log, exc, "%s: pull failed; retrying", self.durable)
            await asyncio.sleep(0.5)
        return []

    async def leftovers(self, held: int) -> list[Msg]:
        """At a new pin: every event a previous holder left unacknowledged, read for up to the pin's
        time-out (:func:`~services.dispatcher.fold.handover.gather_leftovers`). A pull that fails there is
        :meth:`pull`'s, as anywhere: waited out, not the partition's end."""
        within_s = self.settings.event_ack_wait_s + PIN_MARGIN_S

        def pull(wait_s: float) -> Awaitable[list[Msg]]:
            return self.pull(more=True, wait_s=wait_s)

        return await gather_leftovers(self.durable, held, within_s, self.unacknowledged, pull)

    async def unacknowledged(self) -> int:
        """How many of the partition's events the consumer counts as delivered and not acknowledged."""
        info = await self.nc.jetstream().consumer_info(self.stream, self.durable)
        self.raise_floor(acked_to(info) + 1 if info.ack_floor else None)
        return info.num_ack_pending or 0

    def raise_floor(self, floor: int | None) -> None:
        """The consumer acknowledged everything below ``floor``: one made again need not start lower."""
        if floor is not None:
            self.floor = max(self.floor or 0, floor)

    async def unpin_if_dead(self) -> int | None:
        """Free a partition left pinned to a replica that is gone (:mod:`~services.dispatcher.fold.handover`);
        with nothing unacknowledged, the consumer sequence of its last delivery (its first pin is taken
        as one after a let-go), else ``None``."""
        assert self.pinned is not None
        try:
            return await unpin_if_dead(self.nc, self.pinned, look_again_s=FETCH_WAIT_S + 0.5)
        except Exception as exc:  # noqa: BLE001 - the pin's own timeout frees it all the same
            log.warning("%s: could not look for a dead pin (%s)", self.durable, exc)
            return None
