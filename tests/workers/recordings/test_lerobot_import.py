"""A LeRobotDataset v3 zip as a session's source: export → zip → import gives the frames and joints back;
a zip that is not a dataset, or that unpacks too far, is refused with a code."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modal_workers.media.dataset_zip import UnpackLimits, unpack
from modal_workers.media.image_codec import decode_image
from modal_workers.media.lerobot_source import LeRobotReader, camera_name
from modal_workers.recordings.archive import zip_folder
from modal_workers.recordings.lerobot import LeRobotOptions, write_lerobot
from modal_workers.recordings.lerobot_read import dataset_recording
from modal_workers.recordings.model import JPEG_MAGIC
from modal_workers.runtime.worker_runtime import PermanentError
from tests.support.recordings import angles, capture_time, session_recording
from tests.support.sessions import png


def exported_zip(tmp_path: Path, **recording: object) -> Path:
    root = tmp_path / "export"
    write_lerobot(root, [session_recording(**recording)], LeRobotOptions(split_on_reset=True))  # type: ignore[arg-type]
    return zip_folder(root, tmp_path / "dataset.zip")


def test_export_then_import_gives_the_same_frames_and_joints(tmp_path: Path) -> None:
    original = session_recording(10, reset_after=4)
    reader = LeRobotReader(unpack(exported_zip(tmp_path, frames=10, reset_after=4), tmp_path / "unpacked"))
    frames = list(reader.frames())
    assert reader.total_frames == len(frames) == len(original.manifest.frames) == 10
    assert [(f.episode_index, f.frame_index) for f in frames] == [(0, i) for i in range(5)] + [(1, i) for i in range(5)]
    posted = np.asarray([angles(i) for i in range(10)], dtype=np.float32)
    assert np.array_equal(np.asarray([f.state for f in frames], dtype=np.float32), posted)
    assert [f.capture_time for f in frames] == [capture_time(i, 15) for i in range(10)]
    assert [f.seq for f in frames] == list(range(1, 11))
    for frame, recorded in zip(frames, original.manifest.frames, strict=True):
        image = frame.images["observation.images.main"]
        assert image.startswith(JPEG_MAGIC)
        error = np.abs(decode_image(image).astype(float) - decode_image(original.image(recorded)).astype(float)).mean()
        assert error < 20
    back = dataset_recording(reader, session_id="ses_back", kind="splat")
    assert len(back.manifest.frames) == 10
    assert back.manifest.joint_names == original.manifest.joint_names
    assert [c.action for c in back.manifest.controls] == ["reset"]  # one per episode boundary
    assert back.manifest.controls[0].ts == capture_time(5, 15)
    joints = [f.joints.angles for f in back.manifest.frames if f.joints is not None]
    assert np.array_equal(np.asarray(joints, dtype=np.float32), posted)


def test_reimport_exports_again_to_the_same_episodes(tmp_path: Path) -> None:
    reader = LeRobotReader(unpack(exported_zip(tmp_path, frames=8, reset_after=2), tmp_path / "unpacked"))
    again = write_lerobot(tmp_path / "again", [dataset_recording(reader, session_id="ses_2", kind="splat")],
                          LeRobotOptions(split_on_reset=True))  # fmt: skip
    assert (again.episodes, again.frames, again.fps) == (2, 8, 15)
    state = pq.read_table(tmp_path / "again/data/chunk-000/file-000.parquet")["observation.state"].to_pylist()
    assert np.array_equal(np.asarray(state, dtype=np.float32), np.asarray([angles(i) for i in range(8)], np.float32))


def test_an_image_column_dataset_without_gpurelay_columns(tmp_path: Path) -> None:
    """A dataset as lerobot writes image features (PNG bytes in the data file), times from the rate."""
    root = tmp_path / "ds"
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    features = {
        "observation.state": {"dtype": "float32", "shape": [2], "names": ["a", "b"]},
        "observation.images.Top-Cam": {"dtype": "image", "shape": [48, 64, 3], "names": ["height", "width", "channel"]},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    }
    info = {"codebase_version": "v3.0", "fps": 10, "robot_type": None, "features": features,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet", "video_path": None}  # fmt: skip
    (root / "meta/info.json").write_text(json.dumps(info))
    images = [png(i) for i in range(3)]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    data = pa.table({
        "observation.state": pa.array([[0.5 * i, -0.5 * i] for i in range(3)], pa.list_(pa.float32(), 2)),
        "observation.images.Top-Cam": pa.array([{"bytes": b, "path": None} for b in images], image_type),
        "timestamp": pa.array([i / 10 for i in range(3)], pa.float32()),
        "frame_index": pa.array(range(3), pa.int64()),
        "episode_index": pa.array([0, 0, 0], pa.int64()),
    })  # fmt: skip
    pq.write_table(data, root / "data/chunk-000/file-000.parquet")
    episodes = {"episode_index": [0], "length": [3], "data/chunk_index": [0], "data/file_index": [0]}
    pq.write_table(pa.table(episodes), root / "meta/episodes/chunk-000/file-000.parquet")
    recording = dataset_recording(LeRobotReader(root), session_id="ses_img", kind="vlm", start_ts=100.0)
    assert [f.camera for f in recording.manifest.frames] == ["top_cam"] * 3
    assert [recording.image(f) for f in recording.manifest.frames] == images
    assert [f.ts for f in recording.manifest.frames] == [100.0, 100.1, 100.2]
    assert [f.joints.angles if f.joints else None for f in recording.manifest.frames] == [[0, 0], [0.5, -0.5], [1, -1]]
    assert recording.manifest.joint_names == ["a", "b"]


def test_camera_names_fit_gpurelay() -> None:
    keys = ("observation.images.wrist", "observation.images.Top-Cam", "observation.images.0")
    assert [camera_name(k) for k in keys] == ["wrist", "top_cam", "c0"]


def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("entries", "limits", "code"),
    [
        ({"../escape/meta/info.json": b"{}"}, UnpackLimits(), "invalid_archive"),
        ({"/abs/meta/info.json": b"{}"}, UnpackLimits(), "invalid_archive"),
        ({"readme.txt": b"hello"}, UnpackLimits(), "invalid_dataset"),
        (
            {"meta/info.json": b"{}", "big.bin": bytes(3 * 1024 * 1024)},
            UnpackLimits(max_bytes=1024 * 1024),
            "archive_too_large",
        ),
        ({f"f{i}": b"" for i in range(5)}, UnpackLimits(max_entries=4), "archive_too_large"),
    ],
)
def test_bad_archives_are_refused(tmp_path: Path, entries: dict[str, bytes], limits: UnpackLimits, code: str) -> None:
    with pytest.raises(PermanentError) as caught:
        unpack(write_zip(tmp_path / "upload.zip", entries), tmp_path / "out", limits)
    assert caught.value.code == code
    assert not (tmp_path / "escape").exists()


def test_not_a_zip_and_not_v3(tmp_path: Path) -> None:
    (tmp_path / "upload.zip").write_bytes(b"PK but not really")
    with pytest.raises(PermanentError) as caught:
        unpack(tmp_path / "upload.zip", tmp_path / "out")
    assert caught.value.code == "invalid_archive"
    old = write_zip(
        tmp_path / "old.zip",
        {"ds/meta/info.json": json.dumps({"codebase_version": "v2.1", "fps": 30, "features": {}}).encode()},
    )
    with pytest.raises(PermanentError, match="not v3") as caught:
        LeRobotReader(unpack(old, tmp_path / "old"))
    assert caught.value.code == "invalid_dataset"
