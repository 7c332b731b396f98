"""A resumed session's memory: a snapshot taken with ``memory=N`` names where its newest N frames since the last
control start (and the joint samples they match), and a later attempt's input hands those frames out first as
``restored``: counted nowhere, never dropped to make room for new frames, the controls among them not applied
again, not recorded again; the new frames after them come as before."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.session_feed import FeedBacklog, FeedControl, FeedJoints
from contracts.specs.session_params import VlmParams
from modal_workers.runtime import session_input
from modal_workers.runtime.live_session import LiveSession
from modal_workers.runtime.session_input import SessionInput
from modal_workers.runtime.session_resume import MEMORY_MAX, load_resume_point
from tests.workers.runtime.test_session_resume import Host, frame


class Recorder:
    """The frames a live session records."""

    def __init__(self) -> None:
        self.seqs: list[int] = []

    def frames(self, frames: list[Any]) -> None:
        self.seqs += [f.seq for f in frames]


def test_a_memory_is_the_newest_frames_covered_since_the_last_control_and_the_joints_they_match() -> None:
    feed = SessionInput(joint_tolerance_s=0.5)
    for stream_seq, ts in ((10, 1.0), (11, 2.0), (12, 3.0), (13, 4.0), (14, 5.0), (15, 6.0)):
        feed.put(FeedJoints(ts=ts, joint_angles=[0.0] * 6, stream_seq=stream_seq))
    feed.put(frame(1, stream_seq=21, ts=1.0), b"x")
    feed.put(frame(2, stream_seq=22, ts=2.0), b"x")
    assert [f.seq for f in feed.poll().frames] == [1, 2]
    feed.put(FeedControl(action="reset", stream_seq=23))
    assert feed.poll().reset
    for seq in (3, 4, 5, 6):
        feed.put(frame(seq, stream_seq=21 + seq, ts=float(seq)), b"x")
    assert [f.seq for f in feed.poll().frames] == [3, 4, 5, 6]
    assert feed.position(5)[:2] == (26, 13)  # after frame 5; joints from ts 4.5 on
    assert feed.memory(5, 2) == (24, 12)  # frames 4 and 5; joints from ts 3.5 on
    assert feed.memory(5, 10) == (23, 11)  # frames 3 to 5: none before the reset
    assert feed.memory(5, 0) == (26, 13)  # no memory: the position


def test_a_restored_memory_comes_out_first_restored_uncounted_and_never_dropped_for_new_frames() -> None:
    feed = SessionInput(buffer=2, hold=2)
    feed.restore(seq=5, frames_after=30, joints_after=9, processed=5, dropped=0, memory_after=(20, 4))
    assert feed.feed_position() == (20, 4, 30)  # the feed starts at the memory; restored up to 30
    for seq in range(1, 6):
        feed.put(frame(seq, stream_seq=20 + seq), b"x")
    feed.put(FeedControl(action="reset", stream_seq=30))  # handed out before the snapshot: not again
    for seq in (6, 7, 8):  # new frames: the start buffer of 2 holds the newest
        feed.put(frame(seq, stream_seq=25 + seq), b"x")
    assert feed.feed_position() == (33, 4, 0)  # a reconnect now asks for no restored frames
    assert feed.open() == 2  # what session.resumed calls replayed: the new frames only
    batch = feed.poll()
    assert [(f.seq, f.restored) for f in batch.frames] == [(s, True) for s in range(1, 6)] + [(7, False), (8, False)]
    assert not batch.reset
    assert feed.stats() == {"frames_received": 8, "frames_processed": 7, "frames_dropped": 1, "joints_received": 0}


def test_a_restored_memory_is_bounded_by_count_and_bytes_the_oldest_going_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed = SessionInput()
    feed.restore(seq=MEMORY_MAX + 10, frames_after=MEMORY_MAX + 10, joints_after=0, memory_after=(0, 0))
    for seq in range(1, MEMORY_MAX + 11):
        feed.put(frame(seq), b"x")
    restored = feed.poll().frames
    assert (len(restored), restored[0].seq, restored[-1].seq) == (MEMORY_MAX, 11, MEMORY_MAX + 10)
    monkeypatch.setattr(session_input, "MEMORY_MAX_BYTES", 3000)
    feed = SessionInput()
    feed.restore(seq=8, frames_after=8, joints_after=0, memory_after=(0, 0))
    for seq in range(1, 9):
        feed.put(frame(seq), b"x" * 1000)
    assert [f.seq for f in feed.poll().frames] == [6, 7, 8]


def test_a_later_attempt_is_handed_the_snapshots_memory_and_records_only_the_new_frames() -> None:
    host = Host()
    live = LiveSession(host, VlmParams(), expects_joints=False)
    live.input.put(FeedBacklog(stream_seq=0))
    live.ready()
    for seq in (1, 2, 3, 4):
        live.input.put(frame(seq, stream_seq=10 + seq), b"x")
    live.poll(0.1)
    live.snapshot(b"state", seq=3, name="s.json", state={}, memory=2)
    point, _ = load_resume_point(host)
    assert point is not None
    assert (point.frames_after, point.memory_frames_after, point.memory_after) == (13, 11, (11, 0))
    later = LiveSession(host, VlmParams(), expects_joints=False, attempt=2, resumable=True)
    later.restore(point)
    later.recorder = recorder = Recorder()  # type: ignore[assignment]
    assert later.input.feed_position() == (11, 0, 13)
    later.input.put(FeedBacklog(stream_seq=14))
    for seq in (2, 3, 4):
        later.input.put(frame(seq, stream_seq=10 + seq), b"x")
    later.ready()
    batch = later.poll(0.1)
    assert [(f.seq, f.restored) for f in batch.frames] == [(2, True), (3, True), (4, False)]
    assert recorder.seqs == [4]  # the memory was recorded by the attempt that first got it
    assert later.input.stats()["frames_processed"] == 4
