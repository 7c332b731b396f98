"""The feed socket's relay: live frames and joints bounded by count, a resumed worker's restored frames by their
bytes (so its memory is not cut to the live buffer), control never dropped; each drop counted by item."""

from __future__ import annotations

from contracts.session_feed import FeedControl, FeedFrame
from services.common.observability.metrics import SESSION_FEED_DROPPED
from services.gateway.sessions.relay import Relay


def frame(stream_seq: int) -> FeedFrame:
    return FeedFrame(seq=stream_seq, ts=float(stream_seq), content_type="image/jpeg", stream_seq=stream_seq)


def dropped(item: str) -> float:
    samples = (s for m in SESSION_FEED_DROPPED.collect() for s in m.samples if s.name.endswith("_total"))
    return next((s.value for s in samples if s.labels == {"item": item}), 0.0)


async def test_restored_frames_are_bounded_by_bytes_and_live_frames_by_count_each_dropped_oldest_first() -> None:
    before = {item: dropped(item) for item in ("frame", "restored")}
    relay = Relay(max_frames=2, restored_until=10, restored_max_bytes=3000)
    for stream_seq in range(1, 8):  # seven restored frames of 1000 bytes: more than the 2 live frames held
        relay.put(frame(stream_seq), b"r" * 1000)
    relay.put(FeedControl(action="stop", stream_seq=9), None)  # never dropped
    for stream_seq in (11, 12, 13):
        relay.put(frame(stream_seq), b"f")
    assert (relay.held, relay.restored_bytes) == ({"frame": 2, "restored": 3, "joints": 0}, 3000)
    taken = [(await relay.take())[0].stream_seq for _ in range(6)]
    assert taken == [5, 6, 7, 9, 12, 13]
    assert (relay.held, relay.restored_bytes, list(relay.items)) == ({"frame": 0, "restored": 0, "joints": 0}, 0, [])
    assert {item: dropped(item) - before[item] for item in before} == {"frame": 1, "restored": 4}


async def test_without_a_memory_every_frame_is_a_live_one() -> None:
    relay = Relay(max_frames=2)
    for stream_seq in (1, 2, 3):
        relay.put(frame(stream_seq), b"f" * 10_000)
    assert [(await relay.take())[0].stream_seq for _ in range(2)] == [2, 3]
