"""A session feed resumed after a point hands on nothing at or before it, and one that starts with new joint
samples (or those since a time) no older sample, even when nats-py makes its ordered consumer again before
a first message came (a restarted server: nats-py starts it over at the stream's first message then); and
that it reads on at the reconnect, not two missed heartbeats later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import nats.errors
import pytest
from nats.js import JetStreamContext

from contracts.events.registry import EventType, make_event
from contracts.events.robots import JointSample
from contracts.session_feed import H_SEQ, H_TS, FeedBacklog, FeedFrame, FeedJoints
from contracts.streams import Declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
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
    await restart_and_publish(nats_server, feed, lambda: publish_frame(js, subjects, 4), fourth)
    assert seen == [4]


SEEN_WITHIN_S = 8.0
"""From the publish after a restart to the feed handing it on: nats-py alone makes the consumer again only at
its second heartbeat check, 20 s after the feed started (about 14 s after such a publish here); a consumer made
anew at the reconnect hands it on within a second or two."""


async def restart_and_publish(
    nats_server: EmbeddedNats, feed: NatsSessionFeed, publish: Callable[[], Awaitable[int]], seen: asyncio.Event
) -> None:
    """Start ``feed``, restart the server (the feed's memory consumer goes with it: made anew at the
    reconnect), ``publish`` once it is back, and check that the feed has ``seen`` it soon after."""
    await feed.start()
    try:
        nats_server.kill()
        nats_server.start()
        async with asyncio.timeout(60):
            while True:
                try:
                    await publish()
                    break
                except (nats.errors.Error, TimeoutError):
                    await asyncio.sleep(0.5)
            published = time.monotonic()
            await seen.wait()
        assert time.monotonic() - published < SEEN_WITHIN_S
    finally:
        await feed.stop()


ROBOT = "arm-feed"


async def publish_joints(js: JetStreamContext, subjects: Subjects, n: int) -> int:
    sample = JointSample(robot_id=ROBOT, joint_angles=[0.01 * n] * 6, ts=datetime.now(UTC))
    event = make_event(EventType.ROBOT_JOINTS, sample, tenant="acme", source="test")
    return int((await js.publish(subjects.robot_joints("acme", ROBOT), event.to_json_bytes())).seq)


@pytest.mark.parametrize("start", ["new", "since"])
async def test_a_feed_of_new_joint_samples_gets_no_older_one_after_its_consumer_is_made_again(
    start: str, nats_server: EmbeddedNats, js: JetStreamContext, namespace: Namespace, declared: Declarations
) -> None:
    """Samples from now on (``new``), or stored since a time (``since``: the session's creation): the older
    samples the robot sent stay out when nats-py makes the consumer again from the stream's first."""
    subjects = Subjects(namespace)
    for n in (1, 2, 3):
        await publish_joints(js, subjects, n)
    since = None
    if start == "since":
        await asyncio.sleep(0.05)  # the samples before are stored 50 ms before it, by this machine's clock
        since = datetime.now(UTC)
    seen: list[float] = []
    fourth = asyncio.Event()

    def on_item(item: Any, _: bytes | None) -> None:
        if isinstance(item, FeedJoints):
            seen.append(item.joint_angles[0])
            if item.joint_angles[0] == pytest.approx(0.04):
                fourth.set()

    feed = NatsSessionFeed(js, namespace, "acme", SESSION, ROBOT, on_item, FeedStart(joints_since=since))
    await restart_and_publish(nats_server, feed, lambda: publish_joints(js, subjects, 4), fourth)
    assert seen == [pytest.approx(0.04)]


async def test_the_feeds_backlog_says_up_to_where_the_samples_since_its_start_were_stored(
    js: JetStreamContext, namespace: Namespace, declared: Declarations
) -> None:
    """``joints_stream_seq``: the robot's last sample when the feed opened, if it is one the feed hands on
    (the worker opens its input only once it came); none when no sample since the start was stored."""
    subjects = Subjects(namespace)
    before = await publish_joints(js, subjects, 1)
    await asyncio.sleep(0.05)
    since = datetime.now(UTC)
    backlogs: list[FeedBacklog] = []

    async def opened() -> FeedBacklog:
        backlogs.clear()
        feed = NatsSessionFeed(
            js, namespace, "acme", SESSION, ROBOT,
            lambda item, _: backlogs.append(item) if isinstance(item, FeedBacklog) else None,
            FeedStart(joints_since=since),
        )  # fmt: skip
        await feed.start()
        await feed.stop()
        [backlog] = backlogs
        return backlog

    assert (await opened()).joints_stream_seq is None  # only a sample from before the start
    after = [await publish_joints(js, subjects, n) for n in (2, 3)]
    assert before < after[0]
    assert (await opened()).joints_stream_seq == after[-1]
