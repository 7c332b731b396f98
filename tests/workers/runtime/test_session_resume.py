"""Starting, holding and resuming a live session's input: what the runtime guarantees a workload.

While starting, frames are held (bounded by ``hold``, the oldest dropped and counted) and handed out only
once the input is opened; the feed's backlog mark says when the frames sent meanwhile are all in. A
snapshot's stream position covers the frame it names and every control handed out; a resume point is
written beside its snapshot and the newest intact one is found again (one whose snapshot was overwritten
is passed over); a restored input takes the frames after the point once and counts on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from contracts.job_parts import Artifact
from contracts.session_feed import FeedBacklog, FeedControl, FeedFrame, FeedJoints
from contracts.specs.session_params import VlmParams
from modal_workers.runtime.live_session import LiveSession
from modal_workers.runtime.session_input import SessionInput
from modal_workers.runtime.session_resume import is_resumable, load_resume_point, resumable


def frame(seq: int, stream_seq: int | None = None, ts: float | None = None) -> FeedFrame:
    return FeedFrame(
        seq=seq, ts=float(seq) if ts is None else ts, content_type="image/jpeg", stream_seq=stream_seq or seq
    )


class Host:
    """A worker context in memory: stored bytes by name, events in order."""

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}
        self.events: list[tuple[str, Any]] = []

    def store(self, name: str, data: bytes | Path, content_type: str | None = None) -> Artifact:
        body = data if isinstance(data, bytes) else data.read_bytes()
        self.stored[name] = body
        digest = hashlib.sha256(body).hexdigest()
        return Artifact(name=name, key=f"results/t/job/{name}", size=len(body), sha256=digest)

    def load_stored(self, name: str) -> bytes | None:
        return self.stored.get(name)

    def emit(self, type_: Any, payload: Any, name: str | None = None) -> None:
        self.events.append((str(type_), payload))

    def progress(self, fraction: float, message: str | None = None, metrics: dict[str, Any] | None = None) -> None:
        return None

    def check_cancelled(self) -> None:
        return None


def test_a_starting_input_holds_up_to_hold_frames_and_hands_them_all_out_once_open() -> None:
    feed = SessionInput(buffer=2, hold=5)
    for seq in range(1, 8):
        feed.put(frame(seq), b"x")
    assert feed.poll().frames == []  # starting: nothing handed out
    assert (feed.held(), feed.frames_dropped) == (5, 2)
    assert feed.open() == 5
    assert [f.seq for f in feed.poll().frames] == [3, 4, 5, 6, 7]
    for seq in range(8, 12):  # live: the frame buffer bounds what waits
        feed.put(frame(seq), b"x")
    assert [f.seq for f in feed.poll().frames] == [10, 11]
    assert feed.stats()["frames_dropped"] == 4


def test_the_backlog_is_in_once_the_feed_handed_over_what_its_mark_names() -> None:
    feed = SessionInput(hold=8)
    assert not feed.caught_up(0.0)  # no mark yet
    feed.put(FeedBacklog(stream_seq=3))
    feed.put(frame(1), b"x")
    assert not feed.caught_up(0.05)
    feed.put(FeedControl(action="reset", stream_seq=3))
    assert feed.caught_up(0.0)


def test_a_position_covers_the_frame_named_and_every_control_handed_out_and_the_joints_still_needed() -> None:
    feed = SessionInput(joint_tolerance_s=0.5)
    for stream_seq, ts in ((10, 1.0), (11, 2.0), (12, 2.8), (13, 4.0)):
        feed.put(FeedJoints(ts=ts, joint_angles=[0.0] * 6, stream_seq=stream_seq))
    feed.put(frame(1, stream_seq=21, ts=1.0), b"x")
    feed.put(frame(2, stream_seq=22, ts=3.0), b"x")
    feed.put(frame(3, stream_seq=23, ts=4.0), b"x")
    assert [f.seq for f in feed.poll().frames] == [1, 2, 3]
    frames_after, joints_after, processed, dropped = feed.position(2)
    assert (frames_after, joints_after, processed, dropped) == (22, 11, 2, 0)  # frame 3 comes again
    feed.put(FeedControl(action="reset", stream_seq=24))
    assert feed.poll().reset
    assert feed.position(2)[0] == 24  # the reset was applied: it does not come again


def test_a_restored_input_takes_the_frames_after_the_point_once_and_counts_on() -> None:
    feed = SessionInput(hold=8)
    feed.restore(seq=4, frames_after=40, joints_after=7, processed=4, dropped=1)
    assert (feed.last_frame_stream_seq, feed.last_joints_stream_seq) == (40, 7)
    for seq in (3, 4, 5, 7):
        feed.put(frame(seq, stream_seq=40 + seq), b"x")
    feed.open()
    assert [f.seq for f in feed.poll().frames] == [5, 7]
    assert feed.stats() == {"frames_received": 7, "frames_processed": 6, "frames_dropped": 2, "joints_received": 0}


def test_the_newest_intact_resume_point_is_found_and_restored_into_the_other_slot_next() -> None:
    host = Host()
    live = LiveSession(host, VlmParams(), expects_joints=False)
    live.input.put(FeedBacklog(stream_seq=0))
    live.ready()
    for seq in (1, 2, 3):
        live.input.put(frame(seq, stream_seq=10 + seq), b"x")
    live.poll(0.1)
    live.result(1, 3, text="three")
    live.snapshot(b"first", seq=2, name="s.json", state={"n": 1})
    live.snapshot(b"second", seq=3, name="s.json", state={"n": 2})
    point, data = load_resume_point(host)
    assert point is not None
    assert (point.number, point.seq, point.frames_after, point.results, point.state, data) == (
        2, 3, 13, 1, {"n": 2}, b"second"
    )  # fmt: skip
    host.stored["live/0-s.json"] = b"a third, whose own point was never written"
    point, data = load_resume_point(host)  # slot 0's point names "second": passed over
    assert point is not None
    assert (point.number, data) == (1, b"first")
    later = LiveSession(host, VlmParams(), expects_joints=False, attempt=2, resumable=True)
    later.restore(point)
    later.snapshot(b"fourth", seq=5, name="s.json", state={})
    assert (host.stored["live/1-s.json"], host.stored["live/0-s.json"]) == (b"first", b"fourth")
    assert later.input.frames_received == 2
    assert load_resume_point(Host()) == (None, None)


def test_only_workloads_marked_resumable_resume() -> None:
    def plain(spec: Any, ctx: Any) -> None:
        return None

    assert not is_resumable(plain)
    assert is_resumable(resumable(plain))
