"""The session input: bounded frames, joint matching, reset and stop in order, idle and length limits."""

from __future__ import annotations

import threading

import pytest

from contracts.session_feed import FeedBacklog, FeedControl, FeedFrame, FeedJoints
from modal_workers.runtime.session_input import SessionInput


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frame(seq: int, ts: float | None = None, stream_seq: int | None = None) -> FeedFrame:
    when = ts if ts is not None else float(seq)
    return FeedFrame(seq=seq, ts=when, content_type="image/jpeg", stream_seq=stream_seq or seq)


def joints(ts: float, value: float, stream_seq: int = 1) -> FeedJoints:
    return FeedJoints(ts=ts, joint_angles=[value] * 6, stream_seq=stream_seq)


def control(action: str, stream_seq: int = 100) -> FeedControl:
    return FeedControl(action=action, stream_seq=stream_seq)  # type: ignore[arg-type]


def test_frames_come_out_in_order_with_their_bytes() -> None:
    feed = SessionInput(buffer=8)
    for seq in (1, 2, 3):
        feed.put(frame(seq), f"img{seq}".encode())
    batch = feed.poll()
    assert [(f.seq, f.data) for f in batch.frames] == [(1, b"img1"), (2, b"img2"), (3, b"img3")]
    assert feed.stats() == {"frames_received": 3, "frames_processed": 3, "frames_dropped": 0, "joints_received": 0}
    assert feed.poll().frames == []


def test_a_slow_workload_gets_the_newest_frames_and_the_rest_are_counted_dropped() -> None:
    feed = SessionInput(buffer=3)
    for seq in range(1, 11):
        feed.put(frame(seq), b"x")
    assert [f.seq for f in feed.poll().frames] == [8, 9, 10]
    stats = feed.stats()
    assert (stats["frames_received"], stats["frames_processed"], stats["frames_dropped"]) == (10, 3, 7)


def test_gaps_in_seq_count_as_dropped_and_repeats_are_ignored() -> None:
    feed = SessionInput()
    feed.put(frame(1), b"a")
    feed.put(frame(4), b"d")
    feed.put(frame(4), b"again")  # a resumed feed repeats what it sent
    feed.put(frame(2), b"late")
    assert [f.data for f in feed.poll().frames] == [b"a", b"d"]
    assert feed.stats()["frames_dropped"] == 2


def test_reset_drops_what_waited_before_it_and_comes_before_later_frames() -> None:
    feed = SessionInput()
    feed.put(frame(1), b"a")
    assert [f.seq for f in feed.poll().frames] == [1]
    feed.put(frame(2), b"b")
    feed.put(control("reset"))
    feed.put(frame(3), b"c")
    assert feed.poll().reset is True
    assert [f.seq for f in feed.poll().frames] == [3]
    assert feed.stats()["frames_dropped"] == 1


def test_stop_comes_after_the_frames_before_it() -> None:
    feed = SessionInput()
    feed.put(frame(1), b"a")
    feed.put(control("stop"))
    feed.put(frame(2), b"b")
    first = feed.poll()
    assert [f.seq for f in first.frames] == [1]
    assert first.stop is None
    assert feed.poll().stop == "requested"
    assert feed.poll().stop == "requested"  # it stays stopped


def test_idle_and_length_limits_stop_the_session() -> None:
    clock = Clock()
    feed = SessionInput(idle_timeout_s=10, max_session_s=100, clock=clock)
    clock.now += 9
    feed.put(frame(1), b"a")
    clock.now += 9
    assert feed.poll().frames
    assert feed.poll().stop is None
    clock.now += 1.5
    assert feed.poll().stop == "idle"
    long = SessionInput(idle_timeout_s=10, max_session_s=100, clock=clock)
    for seq in range(1, 30):
        clock.now += 4
        long.put(frame(seq), b"x")
        long.poll()
    assert long.poll().stop == "max_duration"


def test_each_frame_gets_the_nearest_joint_sample_within_the_tolerance() -> None:
    feed = SessionInput(joint_tolerance_s=0.05)
    for ts, value in ((9.90, 0.1), (10.00, 0.2), (10.03, 0.3), (11.00, 0.4)):
        feed.put(joints(ts, value))
    feed.put(frame(1, ts=10.02), b"a")  # nearest: 10.03
    feed.put(frame(2, ts=10.50), b"b")  # nearest 11.00 or 10.03: both too far
    feed.put(frame(3, ts=9.89), b"c")
    got = {f.seq: f.joints for f in feed.poll().frames}
    assert got == {1: [0.3] * 6, 2: None, 3: [0.1] * 6}


def test_a_frame_waits_for_a_sample_sent_with_it_up_to_the_joint_wait() -> None:
    """Samples and frames come by different paths (the robot's socket, the session's): a frame waits up
    to ``joint_wait_s`` for a sample at or after its time, however much longer than the matching
    tolerance that is. (A fresh-clone run of the LeRobot loop, at 250 ms tolerance, sent a frame on
    without its sample: the wait was the tolerance.)"""
    clock = Clock()
    feed = SessionInput(joint_tolerance_s=0.05, joint_wait_s=0.5, expects_joints=True, clock=clock)
    feed.put(joints(99.0, 0.1))
    feed.put(frame(1, ts=100.0), b"a")
    assert feed.poll().frames == []  # held: the sample at its time may still come
    clock.now += 0.3  # later than the tolerance, within the wait
    assert feed.poll().frames == []
    feed.put(joints(100.01, 0.7))
    [matched] = feed.poll().frames
    assert matched.joints == [0.7] * 6
    assert matched.joints_ts == pytest.approx(100.01)
    feed.put(frame(2, ts=200.0), b"b")
    clock.now += 0.49
    assert feed.poll().frames == []
    clock.now += 0.02  # no sample came within the wait: it goes without one
    [alone] = feed.poll().frames
    assert alone.seq == 2
    assert alone.joints is None
    wide = SessionInput(joint_tolerance_s=2.0, joint_wait_s=0.25, expects_joints=True, clock=clock)
    wide.put(frame(1, ts=300.0), b"c")
    clock.now += 1.0  # a sample 2 s off still matches, so it may come that late: the longer of the two
    assert wide.poll().frames == []
    clock.now += 1.01
    assert [f.seq for f in wide.poll().frames] == [1]


def test_a_backlogs_frames_wait_for_the_samples_stored_before_the_feed_opened() -> None:
    """A feed opening on a backlog (a session starting, a resumed one) hands over its frames at once and
    the joint samples stored meanwhile later, from a second consumer: the input opens only once those
    samples came too, so every backlog frame gets its sample however late they come. (A fresh-clone run
    replayed a resumed session's frame 5 without one: the frames were handed out on their own.)"""
    clock = Clock()
    feed = SessionInput(joint_tolerance_s=0.05, expects_joints=True, clock=clock, hold=8)
    feed.put(FeedBacklog(stream_seq=2, joints_stream_seq=41))
    feed.put(frame(1, ts=100.0), b"a")
    feed.put(frame(2, ts=100.1), b"b")
    clock.now += 2.0  # the samples' consumer is slow to open on a loaded machine
    assert not feed.caught_up(0.0)
    feed.put(joints(100.0, 0.1, stream_seq=40))
    assert not feed.caught_up(0.0)  # 41 still to come
    feed.put(joints(100.1, 0.2, stream_seq=41))
    assert feed.caught_up(0.0)
    assert feed.open() == 2
    assert [(f.seq, f.joints) for f in feed.poll().frames] == [(1, [0.1] * 6), (2, [0.2] * 6)]


def test_a_held_frame_waits_for_its_sample_from_the_open_not_from_its_arrival() -> None:
    """A backlog frame whose sample was sent just after it (after the feed opened) still gets it."""
    clock = Clock()
    feed = SessionInput(joint_tolerance_s=0.05, expects_joints=True, clock=clock, hold=8)
    feed.put(FeedBacklog(stream_seq=1))
    feed.put(frame(1, ts=100.0), b"a")
    clock.now += 2.0
    assert feed.caught_up(0.0)
    feed.open()
    assert feed.poll().frames == []  # held: arrived 2 s ago, but handed out only from now
    feed.put(joints(100.01, 0.7, stream_seq=5))
    assert [f.joints for f in feed.poll().frames] == [[0.7] * 6]


def test_poll_wakes_when_a_frame_arrives_from_another_thread() -> None:
    feed = SessionInput()
    timer = threading.Timer(0.05, lambda: feed.put(frame(1), b"a"))
    timer.start()
    try:
        assert [f.seq for f in feed.poll(timeout=10).frames] == [1]
    finally:
        timer.cancel()


def test_close_stops_the_next_poll() -> None:
    feed = SessionInput()
    feed.put(frame(1), b"a")
    feed.close("canceled")
    assert feed.poll().stop == "canceled"
