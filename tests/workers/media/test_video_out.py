"""The WebM preview's bounds from the environment, and the frames it keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modal_workers.media.video_out import Preview, Renditions, preview_settings
from tests.support.lap import frame_count, video_size


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Preview(320, 12.0)),
        ({"GPURELAY_VIDEO_WEBM": "0"}, None),
        ({"GPURELAY_VIDEO_WEBM": "off", "GPURELAY_VIDEO_WEBM_WIDTH": "640"}, None),
        ({"GPURELAY_VIDEO_WEBM_WIDTH": "640", "GPURELAY_VIDEO_WEBM_FPS": "0"}, Preview(640, 0.0)),
        ({"GPURELAY_VIDEO_WEBM_WIDTH": "8"}, Preview(64, 12.0)),
    ],
)
def test_preview_settings(environ: dict[str, str], expected: Preview | None) -> None:
    assert preview_settings(environ) == expected


@pytest.mark.parametrize(
    ("fps", "max_fps", "step"), [(24.0, 12.0, 2), (25.0, 12.0, 3), (12.0, 12.0, 1), (60.0, 0.0, 1)]
)
def test_the_preview_keeps_every_step_th_frame(fps: float, max_fps: float, step: int) -> None:
    assert Preview(320, max_fps).step(fps) == step


def test_renditions_write_both_files_and_abort_removes_them(tmp_path: Path) -> None:
    frames = [np.full((240, 640, 3), 10 * k, np.uint8) for k in range(10)]
    out = Renditions(tmp_path / "a.mp4", 24.0, (640, 240), "mp4v", tmp_path / "a.webm", Preview(320, 12.0))
    for frame in frames:
        out.write(frame)
    out.release()
    assert frame_count(tmp_path / "a.mp4") == 10
    assert (frame_count(tmp_path / "a.webm"), video_size(tmp_path / "a.webm"), out.webm_fps) == (5, (320, 120), 12.0)
    failed = Renditions(tmp_path / "b.mp4", 24.0, (640, 240), "mp4v", tmp_path / "b.webm")
    failed.write(frames[0])
    failed.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "a.webm"]
