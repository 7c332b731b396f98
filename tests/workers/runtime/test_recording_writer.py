"""The recording writer on its own: what it stores and lists, its bounds, snapshot keeping, resuming another's."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest

from contracts.events.sessions import SessionAlertPayload, SessionResultPayload
from contracts.recordings import manifest as m
from contracts.recordings.layout import HEAD_NAME, RecordingHead, assemble, index_name
from contracts.recordings.manifest import RecordingManifest
from modal_workers.runtime.recording.settings import RecordingSettings
from modal_workers.runtime.recording.writer import RecordingWriter
from modal_workers.runtime.session_frames import SessionFrame
from tests.support.sessions import jpeg, png


class Blobs:
    """A store in memory: each put completes at once."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[bytes, str]] = {}

    def __call__(self, name: str, data: bytes, content_type: str) -> Future[Any]:
        self.items[name] = (data, content_type)
        done: Future[Any] = Future()
        done.set_result(None)
        return done

    def manifest(self) -> RecordingManifest:
        head = RecordingHead.model_validate_json(self.items[HEAD_NAME][0])
        return assemble(head, [self.items[index_name(n)][0] for n in range(1, head.index_files + 1)])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frame(seq: int, data: bytes | None = None, joints: bool = True) -> SessionFrame:
    angles = [0.1 * seq] * 6 if joints else None
    body = data if data is not None else jpeg(seq)
    kind = "image/png" if body.startswith(b"\x89PNG") else "image/jpeg"
    return SessionFrame(seq, 500.0 + seq, kind, body, None, angles, 500.0 + seq - 0.01 if joints else None)


def writer(blobs: Blobs, clock: Clock, **settings: Any) -> RecordingWriter:
    manifest = RecordingManifest(session_id="job_w", kind="splat", params={"chunk_every": 5})
    return RecordingWriter(blobs, manifest, RecordingSettings(**settings), clock)


def test_frames_controls_outputs_are_stored_and_listed() -> None:
    blobs, clock = Blobs(), Clock()
    w = writer(blobs, clock, snapshot_every_s=0)
    w.frames([frame(1), frame(2, png(2)), frame(4, joints=False)])
    w.frames([frame(2)])  # a repeat (a feed that resumed): not listed twice
    w.control("reset")
    w.result(SessionResultPayload(chunk=1, first_seq=1, last_seq=2, text="two", latency_ms=12.5))
    w.alert(SessionAlertPayload(chunk=1, first_seq=1, last_seq=2, pattern="t", message="matched"))
    w.snapshot(b"ply", seq=4, name="splat.ply", content_type="application/octet-stream")
    w.control("stop")
    w.close()
    manifest = blobs.manifest()
    assert [(f.seq, f.content_type, f.key) for f in manifest.frames] == [
        (1, "image/jpeg", "recording/frames/main/00000001.jpg"),
        (2, "image/png", "recording/frames/main/00000002.png"),
        (4, "image/jpeg", "recording/frames/main/00000004.jpg"),
    ]
    assert blobs.items["recording/frames/main/00000002.png"] == (png(2), "image/png")
    assert manifest.frames[0].joints == m.MatchedJoints(ts=500.99, angles=[0.1] * 6)
    assert manifest.frames[2].joints is None
    assert [c.action for c in manifest.controls] == ["reset", "stop"]
    assert (manifest.results[0].text, manifest.alerts[0].message) == ("two", "matched")
    (kept,) = manifest.snapshots
    assert blobs.items[kept.key] == (b"ply", "application/octet-stream")
    assert (manifest.params, manifest.started_at, manifest.ended_at) == ({"chunk_every": 5}, 1000.0, 1000.0)


def test_snapshots_are_kept_at_most_every_interval_and_the_last_always() -> None:
    blobs, clock = Blobs(), Clock()
    w = writer(blobs, clock, snapshot_every_s=10)
    for n in range(6):  # one every 4 s: kept at 0 s and 12 s; the one at 20 s only at the end
        w.snapshot(f"s{n}".encode(), seq=n, name="splat.ply", content_type="application/octet-stream")
        clock.now += 4
    assert [s.seq for s in w.head.snapshots] == [0, 3]
    w.close()
    assert [blobs.items[s.key][0] for s in blobs.manifest().snapshots] == [b"s0", b"s3", b"s5"]


def test_the_head_is_rewritten_while_the_session_runs() -> None:
    blobs, clock = Blobs(), Clock()
    w = writer(blobs, clock, flush_every_s=5)
    w.frames([frame(1)])
    assert HEAD_NAME not in blobs.items
    clock.now += 5
    w.frames([frame(2)])
    assert [f.seq for f in blobs.manifest().frames] == [1, 2]
    assert blobs.manifest().ended_at is None


def test_a_later_worker_goes_on_and_the_bound_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modal_workers.runtime.recording.writer.INDEX_FRAMES", 3)
    monkeypatch.setattr("modal_workers.runtime.recording.writer.MAX_RECORDED_FRAMES", 6)
    blobs, clock = Blobs(), Clock()
    first = writer(blobs, clock)
    first.frames([frame(n) for n in range(1, 5)])  # one full index file, one open
    first.flush()
    head = RecordingHead.model_validate_json(blobs.items[HEAD_NAME][0])
    assert (head.frame_count, head.index_files) == (4, 2)
    second = writer(blobs, clock)
    second.resume(head, blobs.items[index_name(2)][0])
    second.frames([frame(n) for n in range(3, 9)])  # 3 and 4 seen already; 7 and 8 past the bound
    second.close()
    manifest = blobs.manifest()
    assert [f.seq for f in manifest.frames] == [1, 2, 3, 4, 5, 6]
    assert manifest.frames_left_out == 2


def test_a_resumed_attempt_repeating_its_results_and_alerts_lists_each_chunk_once() -> None:
    blobs, clock = Blobs(), Clock()
    first = writer(blobs, clock)
    first.result(SessionResultPayload(chunk=1, first_seq=1, last_seq=5, text="one"))
    first.alert(SessionAlertPayload(chunk=1, first_seq=1, last_seq=5, pattern="fall", message="a fall"))
    first.flush()
    second = writer(blobs, clock)  # the next attempt resumes from a snapshot before chunk 1's answer
    second.resume(RecordingHead.model_validate_json(blobs.items[HEAD_NAME][0]), None)
    second.result(SessionResultPayload(chunk=1, first_seq=1, last_seq=5, text="one again"))
    second.alert(SessionAlertPayload(chunk=1, first_seq=1, last_seq=5, pattern="fall", message="a fall"))
    second.alert(SessionAlertPayload(chunk=1, first_seq=1, last_seq=5, pattern="smoke", message="smoke"))
    second.result(SessionResultPayload(chunk=2, first_seq=6, last_seq=10, text="two"))
    second.close()
    manifest = blobs.manifest()
    assert [(r.chunk, r.text) for r in manifest.results] == [(1, "one"), (2, "two")]
    assert [(a.chunk, a.pattern) for a in manifest.alerts] == [(1, "fall"), (1, "smoke")]
