"""The webhook fan-out's acks held and sent as one: an ``AckPolicy.ALL`` ack of the highest handled event.

Acking each event cost one message per event (6 of a job-only run's ~90, issue 34). The fan-out's
consumer is made with ``AckPolicy.ALL``, where acking an event acknowledges every event stored
before it, so :class:`HeldAcks` acks once: at most every ``every_s`` (1 s), every ``every_n`` (256)
handled events, and when the fan-out stops (its lease given back or lost, its pull broken).

An AckAll ack covers *every* pending message below it, handled or not, so it is sent only through
the contiguous-done watermark: the highest handled sequence below every message received and not
yet handled (a batch given back, one in hand). A pending message never received here would be
covered too: a dead holder's (pending when the consumer was bound) or one lost on the way (a gap in
the delivery sequence, as at a reconnect). In those cases the consumer's info is read before an
ack: while it counts more pending messages than this fan-out holds above the ack floor, nothing is
acked (they come back after the ack wait and are handled first). The server ignores an ack whose
delivery sequence is below the last one's, so the ack goes on the highest ready event delivered
after it (a redelivered event may be newer than a higher one).

A consumer made before (``AckPolicy.EXPLICIT``: JetStream cannot change a consumer's ack policy) is
acked per event at once, as it was, until it is made again (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerInfo, SequenceInfo

log = logging.getLogger(__name__)
EVERY_S = 1.0
"""The longest a handled event waits for its ack (well within the ack wait, 60 s)."""
EVERY_N = 256
"""Handled events that make an ack at once (with a batch in hand: within ``max_ack_pending``, 512)."""


class HeldAcks:
    """The acks of one binding of the fan-out's consumer (``info``: as read when it was bound)."""

    def __init__(
        self,
        info: ConsumerInfo,
        read_info: Callable[[], Awaitable[ConsumerInfo]],
        every_s: float = EVERY_S,
        every_n: int = EVERY_N,
    ) -> None:
        self.ack_all = info.config.ack_policy == AckPolicy.ALL
        self._read_info, self.every_s, self.every_n = read_info, every_s, every_n
        self.acked_through = 0
        """The highest stream sequence acked here (0: none)."""
        self._open: set[int] = set()  # received, not handled
        self._done: dict[int, Msg] = {}  # handled, not acked: its latest delivery
        self._next_delivery = _delivery(info.delivered) + 1
        self._acked_delivery = _delivery(info.ack_floor)
        self._unseen = bool(info.num_ack_pending)  # pending messages this binding has not received
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def received(self, msgs: list[Msg]) -> None:
        """``msgs`` came (to be handled, or given back): none is covered by an ack until handled."""
        for msg in msgs:
            seq = msg.metadata.sequence
            self._open.add(seq.stream)
            self._done.pop(seq.stream, None)  # redelivered before its ack went: handled again
            if seq.consumer > self._next_delivery:
                self._unseen = True  # a delivery between never came (lost, or another's)
            self._next_delivery = max(self._next_delivery, seq.consumer + 1)

    async def handled(self, msgs: list[Msg]) -> None:
        """``msgs`` are handled: acked now (an explicit-ack consumer) or held for the next ack."""
        if not self.ack_all:
            for msg in msgs:
                await msg.ack()
                self._open.discard(msg.metadata.sequence.stream)
                self.acked_through = max(self.acked_through, msg.metadata.sequence.stream)
            return
        for msg in msgs:
            self._open.discard(msg.metadata.sequence.stream)
            self._done[msg.metadata.sequence.stream] = msg
        if len(self._done) >= self.every_n:
            await self._try_flush()
        if self._done and self._timer is None:
            self._timer = asyncio.create_task(self._flush_later(), name="webhook-fanout-acks")

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.every_s)
        self._timer = None
        await self._try_flush()
        if self._done and self._timer is None:  # held back (an unhandled event below, an unseen one)
            self._timer = asyncio.create_task(self._flush_later(), name="webhook-fanout-acks")

    async def _try_flush(self) -> None:
        try:
            await self.flush()
        except (nats.errors.Error, TimeoutError) as exc:  # JetStream away: held for the next try, or the ack wait
            log.warning("webhook fan-out: acks not sent (%r)", exc)

    async def flush(self) -> None:
        """Ack through the contiguous-done watermark, if anything below it is held."""
        async with self._lock:
            floor = min(self._open, default=None)
            ready = sorted(s for s in self._done if floor is None or s < floor)
            if not ready or (self._unseen and not await self._none_unseen()):
                return
            for seq in reversed(ready):  # the highest whose delivery is newer than the last ack's
                msg = self._done[seq]
                if msg.metadata.sequence.consumer > self._acked_delivery:
                    break
            else:
                return  # each comes back after the ack wait, newer, and is acked then
            await msg.ack()
            self._acked_delivery = msg.metadata.sequence.consumer
            self.acked_through = max(self.acked_through, seq)
            for covered in ready:  # one redelivered during the ack was dropped by received(): handled again
                if covered <= seq:
                    self._done.pop(covered, None)

    async def _none_unseen(self) -> bool:
        """Whether every message pending on the consumer is one received here (then the delivery
        sequence counts again from the server's): a pending one never received must not be acked. What
        is held is taken before asking: one received during the request may not be in the server's count,
        and would pass for the unseen one."""
        before = self._open | self._done.keys()
        info = await self._read_info()
        floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
        held = sum(1 for seq in before if seq > floor)
        if (info.num_ack_pending or 0) > held:
            return False
        self._unseen = False
        self._next_delivery = max(self._next_delivery, _delivery(info.delivered) + 1)
        return True

    async def stop(self) -> None:
        """Send what is held (the fan-out stops or gives its lease back); a failure leaves it to the ack wait."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        await self._try_flush()


def _delivery(sequences: SequenceInfo | None) -> int:
    """The consumer (delivery) sequence of ``sequences`` (0: none)."""
    return sequences.consumer_seq if sequences is not None else 0
