"""A session feed resumed after a point hands on nothing at or before it, even when nats-py makes its
ordered consumer again before a first message came (a restarted server: nats-py starts it over at the
stream's first message then)."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
from nats.js import JetStreamContext

from contracts.session_feed import H_SEQ, H_TS, FeedFrame
from contracts.streams import Declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.embedded import EmbeddedNats
from services.common.session_feed import FeedStart, NatsSessionFeed

SESSION = "ses_0123456789abcdef0123456789abcdef"


async def publish_frame(js: JetStreamContext, subjects: Subjects, seq: int) -> int:
    headers = {H_SEQ: str(seq), H_TS: "1700000000.0", "Content-Type": "image/jpeg", "Nats-Msg-Id": f"frame-{seq}"}
    return int((await js.publish(subjects.session_frames("acme", SESSION), b"\xff\xd8\xff", headers=headers)).seq)


async def test_a_feed_resumed_at_the_end_gets_only_later_frames_after_its_consumer_is_made_again(
    nats_server: EmbeddedNats, js: JetStreamContext, namespace: Namespace, declared: Declarations
) -> None:
    subjects = Subjects(namespace)
    last = [await publish_frame(js, subjects, n) for n in (1, 2, 3)][-1]
    seen: list[int] = []
    fourth = asyncio.Event()

    def on_item(item: Any, _: bytes | None) -> None:
        if isinstance(item, FeedFrame):
            seen.append(item.seq)
            if item.seq == 4:
                fourth.set()

    feed = NatsSessionFeed(js, namespace, "acme", SESSION, None, on_item, FeedStart(after_frames=last))
    await feed.start()
    try:
        nats_server.kill()  # the feed's memory consumer goes with it: made again after two missed heartbeats
        nats_server.start()
        async with asyncio.timeout(60):
            while True:
                try:
                    await publish_frame(js, subjects, 4)
                    break
                except (nats.errors.Error, TimeoutError):
                    await asyncio.sleep(0.5)
            await fourth.wait()
    finally:
        await feed.stop()
    assert seen == [4]
