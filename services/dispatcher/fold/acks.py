"""A fold partition's acks: each event acked as its batch is folded, one request per quiet spell.

The partitions' consumers ack each event explicitly (they read ``JOBS_FOLD``, a work-queue copy
that refused ``AckPolicy.ALL``, until they read JOBS itself). Before, the last ack of every
batch went as a request, so that the holder knew the server had handled the batch's acks (a consumer
handles its acks in order) before it let go of the pin: a reply per batch, and a partition's batches
are mostly single events (issue 34). :class:`BatchAcks` publishes every ack but the last folded
event's, which it holds and sends as a request only when nothing more came for
:data:`~services.dispatcher.fold.partition.HOLD_S` (:meth:`BatchAcks.confirm`), before the pin is given
up, and at a stop; when the next batch comes first, it goes as a plain ack as that batch arrives
(:meth:`BatchAcks.release`), not once that batch is lingered over and folded (which held it past a 2 s ack
wait in tests: the event came again). Every ack still covers only an event already folded, and none
waits past a fraction of a second (the ack wait is 30 s): what the server redelivers, and when, is as
before. A replica that dies with an ack held leaves its pin to time out (``event_ack_wait_s`` + 2 s),
as one that dies with a batch in hand did and does: a starting replica unpins at once only a pin with
nothing unacknowledged (:mod:`~services.dispatcher.fold.handover`).

:class:`BatchSettler` settles each batch with them: folded within its share of the ack wait and acked,
or given back (nak'ed, with what the open request still brings) to come again first, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from services.common.nats.connection import log_failure
from services.dispatcher.fold.batch import BatchFold
from services.dispatcher.fold.partition_pulls import FETCH_WAIT_S, PIN_MARGIN_S
from services.dispatcher.fold.pinned.pull import PinnedPull

log = logging.getLogger(__name__)
ACK, NAK = b"+ACK", b"-NAK"
STOP_GRACE_S = 5.0
"""How long a stop lets a partition finish the batch in hand (fold, ack)."""


class BatchAcks:
    """The acks and naks of one partition's batches on ``nc`` (each request waits ``timeout_s``)."""

    def __init__(self, nc: NatsClient, timeout_s: float) -> None:
        self.nc, self.timeout_s = nc, timeout_s
        self.held: Msg | None = None
        """The last event acked here whose ack is not sent yet (sent as a request by :meth:`confirm`)."""

    async def ack(self, msgs: list[Msg]) -> None:
        """``msgs`` are folded: ack them (and the one held), holding back the last."""
        *first, last = [self.held, *msgs] if self.held is not None else msgs
        for msg in first:
            await self.nc.publish(msg.reply, ACK)
        self.held = last

    async def release(self) -> None:
        """Send the held ack now, as a plain ack: the next batch came, so it goes before that batch
        lingers and folds (the next batch's acks would take it along only once that batch is folded)."""
        held, self.held = self.held, None
        if held is not None:
            await self.nc.publish(held.reply, ACK)

    async def nak(self, msgs: list[Msg]) -> None:
        """Give ``msgs`` back (to be delivered again), after acking the one held; the last nak is a
        request: its answer means the server has handled every ack and nak before it."""
        held, self.held = self.held, None
        if held is not None:
            await self.nc.publish(held.reply, ACK)
        *first, last = msgs
        for msg in first:
            await self.nc.publish(msg.reply, NAK)
        await self.nc.request(last.reply, NAK, timeout=self.timeout_s)

    async def confirm(self) -> None:
        """Send the held ack as a request: once answered, the server has handled every ack sent here.
        Raises if it is not answered (the ack is not held again: the event comes back after the ack
        wait at worst, and folding it again changes nothing)."""
        held, self.held = self.held, None
        if held is not None:
            await self.nc.request(held.reply, ACK, timeout=self.timeout_s)


@dataclass
class BatchSettler:
    """Settles the batches one partition's holder (``durable``) pulled, with ``acks``: each folded and
    acked, or given back; each failure NATS caused is told to ``unavailable``, and what is confirmed
    folded and acked with every batch settled raises the consumer's floor (``raise_floor``)."""

    acks: BatchAcks
    durable: str
    ack_wait_s: float
    unavailable: Callable[[], None]
    raise_floor: Callable[[int], None]
    settled: bool = True
    """Whether every batch this replica pulled was acked or nak'ed (confirmed before the pin goes)."""
    folded_to: int = 0
    """The highest stream sequence of a batch this replica folded and acked (a batch nak'ed comes again first)."""

    async def complete_shielded(self, folder: BatchFold, msgs: list[Msg], puller: PinnedPull, arrived: float) -> None:
        """:meth:`complete`, which a cancel lets finish for up to :data:`STOP_GRACE_S`."""
        done = asyncio.ensure_future(self.complete(folder, msgs, puller, arrived))
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(done, STOP_GRACE_S)  # past it, redelivered after the ack wait
            if not done.done() or done.cancelled():
                self.settled = False
            raise
        except Exception as exc:  # noqa: BLE001 - never let a partition's fold end
            log_failure(log, exc, "%s: a batch failed", self.durable)

    async def complete(self, folder: BatchFold, msgs: list[Msg], puller: PinnedPull, arrived: float) -> None:
        """Fold ``msgs`` and ack them. Folding is cut off at 80 % of the ack wait since the batch
        ``arrived`` (``time.monotonic()``; its linger included), before anyone else could be given these
        events; on any failure the batch is nak'ed, with every later event the
        open request delivers until it ends, so the next pull (still pinned here) gets them again, in
        order, before anything newer; when the server's answer to the acks or naks is unknown this
        replica stops pulling for the pin's timeout: by then the events are due for redelivery, and
        redeliveries come before newer events, whoever pulls."""
        ack_wait = self.ack_wait_s
        deadline = arrived + 0.8 * ack_wait
        self.settled = False
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                await folder.fold(msgs, deadline)
            await self.acks.ack(msgs)
            self.settled = True
            self.folded_to = max([self.folded_to, *(msg.metadata.sequence.stream for msg in msgs)])
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            self.unavailable()
            log_failure(log, exc, "%s: a batch of %d events is given back to be redelivered", self.durable, len(msgs))
            folder.cache.reset(None)
            try:
                await self.acks.nak(msgs + await puller.drain(FETCH_WAIT_S + 1.0))
                self.settled = True
            except Exception:  # noqa: BLE001 - unknown: wait until they are due for redelivery anyway
                log.warning("%s: the server did not confirm the nak; pulling again in %g s", self.durable, ack_wait)
                await asyncio.sleep(ack_wait + PIN_MARGIN_S)
                self.settled = True
            return

    async def release(self) -> None:
        """Send the held ack as a plain ack (:meth:`BatchAcks.release`); one that cannot be sent is logged,
        not raised: its event comes back after the ack wait and folds to no change, while a raise would
        end the partition's fold."""
        try:
            await self.acks.release()
        except Exception as exc:  # noqa: BLE001 - the event comes back after the ack wait at worst
            self.unavailable()
            log.warning("%s: the held ack was not sent (%r)", self.durable, exc)

    async def confirmed(self) -> bool:
        """Send the held ack as a request (:meth:`BatchAcks.confirm`): whether the server answered, so
        every ack sent is handled (the pin may be given up)."""
        try:
            await self.acks.confirm()
        except Exception as exc:  # noqa: BLE001 - the event comes back after the ack wait at worst
            self.unavailable()
            log.warning("%s: the server did not confirm the acks (%r)", self.durable, exc)
            return False
        if self.settled:  # every event it was given is acked, and no one else was given any while it
            self.raise_floor(self.folded_to + 1)  # held the pin (a new pin gathers what others left)
        return True

    async def let_go(self, puller: PinnedPull) -> None:
        """Give back what the open request still delivers (nak'ed: it comes again first, to whoever
        pulls next), then unpin."""
        if rest := await puller.drain(FETCH_WAIT_S + 1.0):
            await self.acks.nak(rest)
        await self.acks.confirm()
        await puller.unpin()
