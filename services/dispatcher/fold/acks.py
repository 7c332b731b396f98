"""A fold partition's acks: each event acked as its batch is folded, one request per quiet spell.

The partitions' consumers ack each event explicitly (they read ``JOBS_FOLD``, a work-queue copy
that refused ``AckPolicy.ALL``, until they read JOBS itself). Before, the last ack of every
batch went as a request, so that the holder knew the server had handled the batch's acks (a consumer
handles its acks in order) before it let go of the pin: a reply per batch, and a partition's batches
are mostly single events (issue 34). :class:`BatchAcks` publishes every ack but the last folded
event's, which it holds and sends as a request only when nothing more came for
:data:`~services.dispatcher.fold.partition.HOLD_S` (:meth:`confirm`), before the pin is given up,
and at a stop; when the next batch comes first, it goes as a plain ack as that batch arrives
(:meth:`release`), not once that batch is lingered over and folded (which held it past a 2 s ack
wait in tests: the event came again). Every ack still covers only an event already folded, and none
waits past a fraction of a second (the ack wait is 30 s): what the server redelivers, and when, is as
before. A replica that dies with an ack held leaves its pin to time out (``event_ack_wait_s`` + 2 s),
as one that dies with a batch in hand did and does: a starting replica unpins at once only a pin with
nothing unacknowledged (:mod:`~services.dispatcher.fold.handover`).
"""

from __future__ import annotations

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

ACK, NAK = b"+ACK", b"-NAK"


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
