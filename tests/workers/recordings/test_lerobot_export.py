"""A recording as a LeRobotDataset v3, read back by independent readers: pyarrow, PyAV and Rerun's LeRobot reader."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from rerun.experimental import LeRobotReader as RerunLeRobotReader

from contracts.recordings.manifest import SO101_JOINT_NAMES
from modal_workers.media.image_codec import decode_image
from modal_workers.recordings.lerobot import LeRobotOptions, LeRobotSummary, write_lerobot
from tests.support.recordings import angles, capture_time, session_recording

DATA = "data/chunk-000/file-000.parquet"
VIDEO = "videos/observation.images.main/chunk-000/file-000.mp4"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LeRobotSummary]:
    root = tmp_path_factory.mktemp("lerobot") / "ds"
    return root, write_lerobot(root, [session_recording(12, fps=15)])


def test_data_file_has_one_row_per_frame_with_the_posted_joints(dataset: tuple[Path, LeRobotSummary]) -> None:
    root, summary = dataset
    table = pq.read_table(root / DATA)
    assert summary.frames == table.num_rows == 12
    schema = {field.name: str(field.type) for field in table.schema}
    assert schema["observation.state"] == schema["action"] == "fixed_size_list<element: float>[6]"
    assert schema["timestamp"] == "float"
    assert schema["capture_time"] == "double"
    assert {schema[n] for n in ("frame_index", "episode_index", "index", "task_index", "seq")} == {"int64"}
    state = np.asarray(table["observation.state"].to_pylist(), dtype=np.float32)
    posted = np.asarray([angles(i) for i in range(12)], dtype=np.float32)
    assert np.array_equal(state, posted)
    action = np.asarray(table["action"].to_pylist(), dtype=np.float32)
    assert np.array_equal(action[:-1], posted[1:])
    assert np.array_equal(action[-1], posted[-1])
    assert table["frame_index"].to_pylist() == table["index"].to_pylist() == list(range(12))
    assert np.allclose(table["timestamp"].to_numpy(), np.arange(12, dtype=np.float32) / 15)
    assert table["capture_time"].to_pylist() == [capture_time(i, 15) for i in range(12)]
    assert table["seq"].to_pylist() == list(range(1, 13))


def test_info_stats_tasks_and_episodes(dataset: tuple[Path, LeRobotSummary]) -> None:
    root, _ = dataset
    info = json.loads((root / "meta/info.json").read_text())
    assert (info["codebase_version"], info["robot_type"], info["fps"]) == ("v3.0", "so101", 15)
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (1, 12, 1)
    assert info["features"]["observation.state"] == {"dtype": "float32", "shape": [6], "names": list(SO101_JOINT_NAMES)}
    image = info["features"]["observation.images.main"]
    assert (image["dtype"], image["shape"], image["info"]["video.fps"]) == ("video", [64, 96, 3], 15)
    assert info["data_path"].format(chunk_index=0, file_index=0) == DATA
    stats = json.loads((root / "meta/stats.json").read_text())
    posted = np.asarray([angles(i) for i in range(12)], dtype=np.float32)
    assert stats["observation.state"]["count"] == [12]
    assert np.allclose(stats["observation.state"]["min"], posted.min(axis=0))
    assert np.allclose(stats["observation.state"]["max"], posted.max(axis=0))
    assert np.asarray(stats["observation.images.main"]["mean"]).shape == (3, 1, 1)
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.to_pylist() == [{"task_index": 0, "task": "pick up the red cube"}]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    (episode,) = pq.read_table(root / EPISODES).to_pylist()
    assert (episode["episode_index"], episode["length"], episode["tasks"]) == (0, 12, ["pick up the red cube"])
    assert (episode["dataset_from_index"], episode["dataset_to_index"]) == (0, 12)
    assert episode["videos/observation.images.main/from_timestamp"] == 0.0
    assert episode["videos/observation.images.main/to_timestamp"] == pytest.approx(12 / 15)
    assert episode["stats/observation.state/count"] == [12]


def test_video_holds_every_frame_at_its_timestamp(dataset: tuple[Path, LeRobotSummary]) -> None:
    root, _ = dataset
    recording = session_recording(12, fps=15)
    with av.open(str(root / VIDEO)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert (stream.width, stream.height, stream.base_rate) == (96, 64, Fraction(15))
    assert len(frames) == 12
    assert [round(float(f.time) * 15) for f in frames] == list(range(12))
    originals = [decode_image(recording.image(f)).astype(np.float64) for f in recording.manifest.frames]
    for i, frame in enumerate(frames):  # lossy, yet each decoded frame is nearest its own original
        decoded = frame.to_ndarray(format="rgb24").astype(np.float64)
        errors = [np.abs(decoded - original).mean() for original in originals]
        assert int(np.argmin(errors)) == i
        assert errors[i] < 20


def test_rerun_reads_the_dataset(dataset: tuple[Path, LeRobotSummary]) -> None:
    root, _ = dataset
    reader = RerunLeRobotReader(root)
    assert (reader.version, reader.episodes()) == ("v3", [0])
    rows: dict[str, int] = {}
    for chunk in reader.stream(0).to_chunks():
        names = chunk.to_record_batch().schema.names
        for component in ("Scalars:scalars", "VideoStream:sample"):
            if component in names and chunk.timeline_names:
                rows[f"{chunk.entity_path} {component}"] = (
                    rows.get(f"{chunk.entity_path} {component}", 0) + chunk.num_rows
                )
    assert rows["/observation.state Scalars:scalars"] == 12
    assert rows["/action Scalars:scalars"] == 12
    assert rows["/observation.images.main VideoStream:sample"] == 12


def test_episodes_split_on_reset_share_one_file(tmp_path: Path) -> None:
    summary = write_lerobot(tmp_path, [session_recording(10, reset_after=3)], LeRobotOptions(split_on_reset=True))
    assert (summary.episodes, summary.frames) == (2, 10)
    episodes = pq.read_table(tmp_path / EPISODES).to_pylist()
    assert [(e["length"], e["dataset_from_index"], e["dataset_to_index"]) for e in episodes] == [(4, 0, 4), (6, 4, 10)]
    assert episodes[1]["videos/observation.images.main/from_timestamp"] == pytest.approx(4 / 15)
    assert [e["stats/observation.state/count"] for e in episodes] == [[4], [6]]
    assert [np.shape(e["stats/observation.images.main/mean"]) for e in episodes] == [(3, 1, 1)] * 2
    table = pq.read_table(tmp_path / DATA)
    assert table["episode_index"].to_pylist() == [0] * 4 + [1] * 6
    assert table["frame_index"].to_pylist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5]
    assert table["index"].to_pylist() == list(range(10))
    action = np.asarray(table["action"].to_pylist(), dtype=np.float32)
    # an episode's last action holds its own state, not the next episode's first
    assert np.array_equal(action[3], np.asarray(angles(3), dtype=np.float32))
    reader = RerunLeRobotReader(tmp_path)
    assert reader.episodes() == [0, 1]


def test_frames_without_joints_are_left_out_and_fps_can_be_set(tmp_path: Path) -> None:
    summary = write_lerobot(tmp_path, [session_recording(10, unmatched=(2, 5))], LeRobotOptions(fps=10))
    assert (summary.frames, summary.frames_left_out, summary.fps) == (8, 2, 10)
    table = pq.read_table(tmp_path / DATA)
    assert table["seq"].to_pylist() == [1, 2, 4, 5, 7, 8, 9, 10]
    assert np.allclose(table["timestamp"].to_numpy(), np.arange(8) / 10)
    with av.open(str(tmp_path / VIDEO)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 8


def test_h264_when_asked_and_two_cameras(tmp_path: Path) -> None:
    summary = write_lerobot(
        tmp_path, [session_recording(6, cameras=("main", "wrist"))], LeRobotOptions(codecs=("libx264",))
    )
    assert summary.codec == "libx264"
    info = json.loads((tmp_path / "meta/info.json").read_text())
    for camera in ("main", "wrist"):
        assert info["features"][f"observation.images.{camera}"]["info"]["video.codec"] == "h264"
        with av.open(str(tmp_path / f"videos/observation.images.{camera}/chunk-000/file-000.mp4")) as container:
            assert sum(1 for _ in container.decode(video=0)) == 6
    assert pq.read_table(tmp_path / DATA).num_rows == 6


def test_a_recording_without_frames_is_refused(tmp_path: Path) -> None:
    from modal_workers.recordings.model import RecordingBuilder

    with pytest.raises(ValueError, match="no frame"):
        write_lerobot(tmp_path, [RecordingBuilder("ses_empty", "vlm").build()])
