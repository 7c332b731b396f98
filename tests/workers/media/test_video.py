"""The shared video helpers: sampling and scaling rules, and bounded waits on a stuck decoder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from modal_workers.media import video
from modal_workers.media.video import FrameReader, VideoInfo, sampled_count, scaled_size
from modal_workers.runtime.worker_runtime import PermanentError
from tests.support.lap import frame_count, scrolling_video

pytestmark = pytest.mark.timeout(30)


def test_sampling_and_scaling_rules() -> None:
    assert sampled_count(48, 24.0, None) == 48
    assert sampled_count(48, 24.0, 12.0) == 24
    assert sampled_count(48, 24.0, 10.0) == 20
    assert sampled_count(48, 24.0, 60.0) == 48  # never more frames than decoded
    assert scaled_size(1280, 720, 640) == (640, 360)
    assert scaled_size(160, 120, 640) == (160, 120)  # never upscaled
    assert scaled_size(161, 121, None) == (160, 120)  # even sizes for any encoder


def test_the_reader_keeps_the_sampled_frames_at_the_processed_size(tmp_path: Path) -> None:
    path = scrolling_video(tmp_path / "v.mp4", [2.0 * k for k in range(48)], size=(320, 240))
    info = video.probe(path)
    assert (info.frames, info.fps, info.width, info.height) == (48, 24.0, 320, 240)
    with FrameReader(info, width=160, sample_fps=8.0, queue_size=2) as reader:
        frames = list(reader)
    assert [f.index for f in frames] == list(range(0, 48, 3))
    assert frames[0].image.shape == (120, 160, 3)
    assert (reader.decoded, reader.kept, reader.fps) == (48, 16, 8.0)
    assert frame_count(path) == 48


class StuckCapture:
    """A capture whose decoder never returns a frame in time."""

    def read(self) -> tuple[bool, Any]:
        time.sleep(30)  # far past the timeout: a reader that waited for it could not pass under 10 s
        return False, None

    def release(self) -> None:
        """Nothing to release."""


def test_a_stuck_decoder_fails_with_invalid_video_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    info = VideoInfo(tmp_path / "x.mp4", 10, 24.0, 160, 120)
    monkeypatch.setattr(video, "_open", lambda path: (StuckCapture(), info))
    started = time.monotonic()
    with pytest.raises(PermanentError) as stalled, FrameReader(info, frame_timeout_s=0.3) as reader:
        list(reader)
    assert stalled.value.code == "invalid_video"
    assert time.monotonic() - started < 10


def test_a_probe_that_never_returns_fails_with_invalid_video(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(video, "_open", lambda path: time.sleep(30))
    started = time.monotonic()
    with pytest.raises(PermanentError) as stuck:
        video.probe(tmp_path / "x.mp4", timeout_s=0.3)
    assert stuck.value.code == "invalid_video"
    assert time.monotonic() - started < 10
