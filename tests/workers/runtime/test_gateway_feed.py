"""A remote worker's session feed over the gateway's real feed socket, into a real SessionInput.

Frames posted over HTTP and the robot's joints arrive in order, each frame with its nearest sample;
a reconnect resumes after what the worker saw (nothing twice); stop reaches the workload; a later attempt's
input gets its memory back (``restored_until``) before the frames after its snapshot; a token of another job
is refused for good.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bench.harness.secrets import INGEST_SECRET
from contracts.session_feed import FeedFrame
from modal_workers.runtime.session_feeds import GatewayFeed, feed_url
from modal_workers.runtime.session_frames import SessionBatch
from modal_workers.runtime.session_input import SessionInput
from services.common.auth.ingest_tokens import mint_ingest_token
from tests.support.gateway import Gateway, Tenant
from tests.support.sessions import jpeg

JPEG = {"Content-Type": "image/jpeg"}


def token(tenant: str, session_id: str) -> str:
    return mint_ingest_token(INGEST_SECRET.encode(), tenant, session_id, 1, ttl_s=60)


@asynccontextmanager
async def feeding(
    gateway: Gateway, session_id: str, into: SessionInput, secret_token: str, seen: list[int] | None = None
) -> AsyncIterator[GatewayFeed]:
    """A started feed of ``session_id`` into ``into`` (``seen`` gets each frame's seq as it arrives)."""

    def on_item(item: object, data: bytes | None) -> None:
        if seen is not None and isinstance(item, FeedFrame):
            seen.append(item.seq)
        into.put(item, data)  # type: ignore[arg-type]

    url = feed_url(f"{gateway.url}/v1/internal/jobs/{session_id}/events", session_id)
    feed = GatewayFeed(url, secret_token, on_item, into.feed_position, retry_max_s=0.2)
    await feed.start()
    try:
        yield feed
    finally:
        await feed.stop()


async def polled(into: SessionInput, want: int, timeout_s: float = 15.0) -> list[SessionBatch]:
    """Batches until ``want`` frames, or a reset/stop, came (bounded)."""
    batches: list[SessionBatch] = []
    async with asyncio.timeout(timeout_s):
        while sum(len(b.frames) for b in batches) < want:
            batch = await asyncio.to_thread(into.poll, 0.5)
            if batch.frames or batch.reset or batch.stop:
                batches.append(batch)
            if batch.reset or batch.stop:
                break
    return batches


async def test_frames_and_joints_arrive_matched_and_a_reconnect_resumes(gateway: Gateway, acme: Tenant) -> None:
    sid = (await acme.http.post("/v1/sessions", json={"kind": "splat", "robot_id": "arm-f"})).json()["id"]
    into = SessionInput(expects_joints=True, joint_tolerance_s=0.5)
    seen: list[int] = []
    t0 = time.time()
    async with feeding(gateway, sid, into, token("acme", sid), seen):
        for i in range(3):
            ts = t0 + i
            joints = {"joint_angles": [0.1 * i] * 6, "ts": ts + 0.01}
            assert (await acme.http.post("/v1/robots/arm-f/joints", json=joints)).status_code == 202
            frame = await acme.http.post(f"/v1/sessions/{sid}/frames?ts={ts}", content=jpeg(i), headers=JPEG)
            assert frame.status_code == 202
        batches = await polled(into, 3)
    frames = [f for b in batches for f in b.frames]
    assert [f.seq for f in frames] == [1, 2, 3]
    assert [f.data for f in frames] == [jpeg(0), jpeg(1), jpeg(2)]
    assert [f.joints for f in frames] == [[0.1 * i] * 6 for i in range(3)]

    for i in (3, 4):
        assert (await acme.http.post(f"/v1/sessions/{sid}/frames", content=jpeg(i), headers=JPEG)).status_code == 202
    assert (await acme.http.post(f"/v1/sessions/{sid}/stop")).status_code == 202
    into.expects_joints = False
    async with feeding(gateway, sid, into, token("acme", sid), seen) as again:
        later = await polled(into, 2)
        stop = await asyncio.to_thread(into.poll, 5.0) if not later[-1].stop else later[-1]
    assert [f.seq for b in later for f in b.frames] == [4, 5]
    assert stop.stop == "requested"
    assert seen == [1, 2, 3, 4, 5]  # the second socket began after frame 3
    assert again.connects == 1


async def test_a_later_attempt_gets_the_snapshots_memory_restored_then_the_frames_after_it(
    gateway: Gateway, acme: Tenant
) -> None:
    sid = (await acme.http.post("/v1/sessions", json={"kind": "vlm"})).json()["id"]
    first = SessionInput(buffer=64)
    async with feeding(gateway, sid, first, token("acme", sid)):
        for i in range(24):  # each taken before the next is sent: the first attempt trains on all
            frame = await acme.http.post(f"/v1/sessions/{sid}/frames", content=jpeg(i), headers=JPEG)
            assert frame.status_code == 202
            await polled(first, 1)
    frames_after, joints_after, processed, dropped = first.position(20)
    later = SessionInput(buffer=64)
    later.restore(20, frames_after, joints_after, processed, dropped, memory_after=first.memory(20, 20))
    assert later.feed_position()[2] == frames_after  # the socket is asked for the memory: ?restored_until=
    # 20 restored frames come at once, more than the relay's 16 live ones: none is dropped
    async with feeding(gateway, sid, later, token("acme", sid)):
        batches = await polled(later, 24)
    frames = [(f.seq, f.restored) for b in batches for f in b.frames]
    assert frames == [(seq, seq <= 20) for seq in range(1, 25)]
    assert later.stats()["frames_processed"] == 24


async def test_a_token_of_another_session_is_refused_for_good(gateway: Gateway, acme: Tenant) -> None:
    sid = (await acme.http.post("/v1/sessions", json={"kind": "vlm"})).json()["id"]
    other = (await acme.http.post("/v1/sessions", json={"kind": "vlm"})).json()["id"]
    into = SessionInput()
    async with feeding(gateway, sid, into, token("acme", other)) as feed:
        async with asyncio.timeout(10):
            assert await feed.ended_for_good() == "refused (4401)"
    assert feed.connects == 1
