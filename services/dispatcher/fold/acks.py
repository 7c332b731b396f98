"""A fold partition's acks: one ``AckPolicy.ALL`` ack for every event folded since the last one sent.

A partition's consumer acks with AckAll (issue 34: each folded event was acked on its own, a message per
event). An AckAll ack of an event acknowledges every event of the consumer stored at or before it, so one
ack covers every batch folded since the last ack sent: :class:`BatchAcks` holds it (:attr:`held`, the
highest stream sequence folded) and sends it as a request once nothing more came for
:data:`~services.dispatcher.fold.partition.HOLD_S` (:meth:`confirm`), before the pin is given up, and at
a stop; as a plain ack when the next batch comes after it was held for ``hold_s`` (its events' ack wait
runs on while that batch lingers and folds: at most 80 % of the ack wait from its arrival, so ``hold_s``
stays under a tenth of it), and when it covers ``most_held`` events (the consumer delivers no more than
``max_ack_pending`` unacknowledged ones).

**Never over an event not folded.** An AckAll ack would acknowledge an event delivered to this replica
and lost on the way (a reconnect drops what the server sent meanwhile), or one a previous holder left,
never folded. So it is held only while every delivery of the pin came here: each delivery carries the
consumer's delivery sequence, and :meth:`see` checks that a batch's come right after the last ones
(:attr:`through`). At a new pin that is known only when this replica let go of the pin last with
everything acknowledged and is the first delivered to since (:meth:`new_pin`). Otherwise (a new pin after
another holder, a gap) the partition folds on and keeps what it folded unacknowledged (:attr:`unsafe`)
until the consumer's info shows every unacknowledged event of the consumer among them
(:meth:`settle_with`): with AckAll, what is unacknowledged is every delivered event after the ack floor, so
counting them is exact. A lost delivery comes again after the ack wait and is refolded as any redelivery.
"""

from __future__ import annotations

import time
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

ACK, NAK = b"+ACK", b"-NAK"


def stream_seq(msg: Msg) -> int:
    """The stream sequence of a delivered event."""
    return int(msg.metadata.sequence.stream)


def delivery_seq(msg: Msg) -> int:
    """The consumer (delivery) sequence of a delivered event."""
    return int(msg.metadata.sequence.consumer)


class BatchAcks:
    """The AckAll acks and the naks of one partition's batches on ``nc`` (each request waits ``timeout_s``)."""

    def __init__(self, nc: NatsClient, timeout_s: float, hold_s: float, most_held: int) -> None:
        self.nc, self.timeout_s, self.hold_s, self.most_held = nc, timeout_s, hold_s, max(1, most_held)
        self.held: Msg | None = None
        """The folded event of the highest stream sequence whose ack is not sent (it covers every other)."""
        self.held_since = 0.0
        """When the first event the held ack covers arrived (``time.monotonic()``)."""
        self.covered = 0
        """How many folded events the held ack covers."""
        self.through: int | None = None
        """The delivery sequence up to which every delivery of this pin came here (``None``: not known)."""
        self.unsafe: dict[int, Msg] = {}
        """Events folded while :attr:`through` is not known, by stream sequence: not acked until
        :meth:`settle_with` finds every unacknowledged event of the consumer among them."""
        self.last_delivery = 0
        """The highest delivery sequence folded or given back here."""

    @property
    def safe(self) -> bool:
        """Whether every delivery of this pin came here, so the held ack covers only folded events."""
        return self.through is not None

    def new_pin(self, let_go_at: int | None) -> None:
        """A new pin: its deliveries follow ``let_go_at`` when this replica let go of the pin last with
        everything acknowledged and no one was delivered anything since (``None``: not known)."""
        self.through = let_go_at

    def see(self, msgs: list[Msg]) -> bool:
        """Take ``msgs``' deliveries; whether they show one missing after :attr:`through` (lost, or made
        to another), which makes it unknown: each must come right after the last one seen."""
        seqs = sorted(delivery_seq(msg) for msg in msgs)
        self.last_delivery = max([self.last_delivery, *seqs])
        if self.through is None:
            return False
        if seqs != list(range(self.through + 1, self.through + 1 + len(seqs))):
            self.through = None
            return True
        self.through += len(seqs)
        return False

    async def folded(self, msgs: list[Msg], arrived: float) -> None:
        """``msgs`` (arrived at ``arrived``) are folded: the held ack covers them, or they wait in
        :attr:`unsafe`; the held ack goes now if it covers ``most_held``."""
        if not self.safe:
            self.unsafe.update((stream_seq(msg), msg) for msg in msgs)
            return
        self._hold(msgs, arrived)
        if self.covered >= self.most_held:
            await self._send()

    def settle_with(self, info: dict[str, Any]) -> bool:
        """Whether the consumer's ``info`` (as the JetStream API answers it) shows every unacknowledged
        event among those folded here and nothing delivered since: then :attr:`unsafe` is held for one ack
        and the pin's deliveries are known again."""
        floor = int((info.get("ack_floor") or {}).get("stream_seq") or 0)
        delivered = int((info.get("delivered") or {}).get("consumer_seq") or 0)
        mine = {seq: msg for seq, msg in self.unsafe.items() if seq > floor}
        if len(mine) != int(info.get("num_ack_pending") or 0) or delivered != self.last_delivery:
            return False
        self.unsafe.clear()
        self.through = delivered
        if mine:
            self._hold(list(mine.values()), time.monotonic())
        return True

    def _hold(self, msgs: list[Msg], arrived: float) -> None:
        if not msgs:
            return
        if self.held is None:
            self.held_since, self.covered = arrived, 0
        self.held = max(msgs if self.held is None else [self.held, *msgs], key=stream_seq)
        self.covered += len(msgs)

    async def release(self) -> None:
        """The next batch came: send the held ack now, as a plain ack, if it was held ``hold_s`` (that
        batch's ack would cover it, but only once it lingered and folded)."""
        if self.held is not None and time.monotonic() - self.held_since >= self.hold_s:
            await self._send()

    async def _send(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            await self.nc.publish(held.reply, ACK)

    async def nak(self, msgs: list[Msg]) -> None:
        """Give ``msgs`` back (to be delivered again, before anything newer), after sending the held ack
        (it covers only events before them); the last nak is a request: its answer means the server has
        handled every ack and nak before it."""
        await self._send()
        self.see([msg for msg in msgs if self.through is None or delivery_seq(msg) > self.through])
        *first, last = msgs
        for msg in first:
            await self.nc.publish(msg.reply, NAK)
        await self.nc.request(last.reply, NAK, timeout=self.timeout_s)

    async def confirm(self) -> None:
        """Send the held ack as a request: once answered, the server has handled every ack sent here.
        Raises if it is not answered (the ack is not held again: its events come back after the ack
        wait at worst, and folding them again changes nothing)."""
        held, self.held = self.held, None
        if held is not None:
            await self.nc.request(held.reply, ACK, timeout=self.timeout_s)
