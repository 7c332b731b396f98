"""The recording manifest's rules and the episode rows and frame rate an export derives from it."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from contracts.recordings.manifest import RecordingManifest
from modal_workers.recordings.model import DEFAULT_FPS, RecordingBuilder, content_type_of, episode_rows, median_fps
from tests.support.recordings import angles, session_recording
from tests.support.sessions import jpeg, png


def frame(seq: int, ts: float, joints: list[float] | None = None) -> dict[str, object]:
    """A frame of a manifest as JSON data (validated with the manifest)."""
    matched = None if joints is None else {"ts": ts, "angles": joints}
    return {"seq": seq, "ts": ts, "content_type": "image/jpeg", "key": f"f/{seq}", "joints": matched}


def test_manifest_round_trips_as_json() -> None:
    manifest = session_recording(4).manifest
    assert RecordingManifest.model_validate_json(manifest.model_dump_json()) == manifest
    assert [f.key for f in manifest.frames] == [f"frames/main/{i:08d}.jpg" for i in range(1, 5)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"frames": [frame(2, 1.0), frame(1, 2.0)]}, "increasing seq"),
        ({"frames": [frame(1, 1.0, [0.1, 0.2])]}, "6 angles"),
        ({"frames": [frame(1, math.nan)]}, "finite"),
        ({"frames": [frame(1, 1.0, [math.inf] * 6)]}, "finite"),
        ({"joint_names": []}, "at least 1"),
    ],
)
def test_manifest_refuses(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RecordingManifest.model_validate({"session_id": "ses_x", "kind": "splat", **change})


def test_camera_names_are_feature_keys() -> None:
    with pytest.raises(ValidationError):
        RecordingBuilder("ses_x", "splat").frame(jpeg(0), ts=1.0, camera="Main Camera")


def test_content_type_by_magic_bytes() -> None:
    assert (content_type_of(jpeg(0)), content_type_of(png(0))) == ("image/jpeg", "image/png")
    with pytest.raises(ValueError, match="JPEG or PNG"):
        content_type_of(b"GIF89a")


def test_median_fps_ignores_a_gap_and_jitter() -> None:
    builder = RecordingBuilder("ses_x", "splat")
    times = [0.0, 0.1, 0.2, 0.31, 0.4, 2.0, 2.1, 2.2]  # 10 fps with one pause of 1.6 s
    frames = [builder.frame(jpeg(i), ts=t) for i, t in enumerate(times)]
    assert median_fps(frames) == 10
    assert median_fps(frames[:1]) == DEFAULT_FPS


def test_rows_follow_the_first_camera_and_split_on_reset() -> None:
    recording = session_recording(6, cameras=("main", "wrist"), reset_after=1, unmatched=(4,))
    (whole,) = episode_rows(recording)
    assert [row.seq for row in whole] == [1, 3, 5, 7, 11]  # main's frames, frame 4 (seq 9) has no joints
    assert [row.images["wrist"].seq for row in whole] == [2, 4, 6, 8, 12]  # the wrist frame nearest in time
    assert [row.state for row in whole] == [angles(i) for i in (0, 1, 2, 3, 5)]
    first, second = episode_rows(recording, split_on_reset=True)
    assert ([r.seq for r in first], [r.seq for r in second]) == ([1, 3], [5, 7, 11])


def test_rows_without_any_joints_carry_no_state() -> None:
    builder = RecordingBuilder("ses_x", "vlm", robot_type=None)
    for i in range(3):
        builder.frame(jpeg(i), ts=float(i))
    (rows,) = episode_rows(builder.build())
    assert [(row.seq, row.state) for row in rows] == [(1, None), (2, None), (3, None)]
