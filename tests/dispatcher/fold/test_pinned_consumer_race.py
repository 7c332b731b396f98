"""Two replicas that make one missing fold consumer at once both go on with it.

Each asks for it with its own floor, so the two ``CONSUMER.CREATE`` requests differ in where the
consumer starts, and nats-server refuses the second ("consumer already exists"). The replica whose
create was refused reads the consumer made by the other and takes it when it matches apart from its
start: before, its start failed (and it was started again).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.fold.pinned.consumer import PinnedConsumer

pytestmark = pytest.mark.timeout(60)


def fold_consumer(filters: tuple[str, ...] = ("ev.>",)) -> PinnedConsumer:
    return PinnedConsumer("EV", "fold", filters, ack_wait_s=8.0, max_deliver=3, max_ack_pending=64, pin_timeout_s=10.0)


async def test_two_replicas_making_one_consumer_at_once_both_take_it(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "nats") as server:
        first, second = await nats.connect(server.url), await nats.connect(server.url)
        try:
            js = first.jetstream()
            await js.add_stream(StreamConfig(name="EV", subjects=["ev.>"]))
            for n in range(10):
                await js.publish(f"ev.{n}", b"x")
            # the same consumer, each replica with its own floor, asked for together
            floors = await asyncio.gather(fold_consumer().ensure(first, 3), fold_consumer().ensure(second, 7))
            info = await js.consumer_info("EV", "fold")
            assert info.config.opt_start_seq in (3, 7)
            made, taken = sorted(floors, key=lambda floor: floor is not None)
            assert made is None  # the one whose create went through
            assert taken == info.config.opt_start_seq  # the other read it: nothing acknowledged, so where it starts
        finally:
            await first.close()
            await second.close()
