"""The files of a LeRobotDataset v3 besides its videos: paths, ``info.json``'s features, and the parquet tables.

Names, keys and column types follow ``lerobot.datasets`` (codebase v3.0): a vector feature is a
fixed-size list column (``datasets.Sequence(length=n)``), a shape-(1,) one a scalar column, and
``meta/tasks.parquet`` holds the task strings as its pandas index (the pandas metadata says so, as
``DataFrame.to_parquet`` writes it), which ``lerobot``'s ``load_tasks`` reads back as ``tasks.index``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modal_workers.media.lerobot_source import STATE
from modal_workers.recordings.video import VideoWriter, probe

__all__ = ["ACTION", "IMAGES", "STATE"]

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE, DATA_FILES_SIZE_IN_MB, VIDEO_FILES_SIZE_IN_MB = 1000, 100, 200  # lerobot's defaults
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INFO_FILE, STATS_FILE, TASKS_FILE = "meta/info.json", "meta/stats.json", "meta/tasks.parquet"
DATA_FILE = DATA_PATH.format(chunk_index=0, file_index=0)
EPISODES_FILE = EPISODES_PATH.format(chunk_index=0, file_index=0)
ACTION, IMAGES = "action", "observation.images."
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
EXTRA_COLUMNS = ("capture_time", "seq")
"""gpurelay's columns: a frame's capture time (UNIX s) and its number in the session."""


@dataclass
class FrameColumns:
    """The data file's columns, filled a frame at a time."""

    state: list[list[float]] = field(default_factory=list)
    action: list[list[float]] = field(default_factory=list)
    frame_index: list[int] = field(default_factory=list)
    episode_index: list[int] = field(default_factory=list)
    task_index: list[int] = field(default_factory=list)
    capture_time: list[float] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)


def image_key(camera: str) -> str:
    """A camera's feature key."""
    return IMAGES + camera


def video_file(key: str) -> str:
    """Where a camera's video lies, relative to the dataset's root."""
    return VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)


def numeric_columns(with_state: bool) -> list[str]:
    """The data file's columns that get statistics."""
    return [*((STATE, ACTION) if with_state else ()), *INDEX_COLUMNS, *EXTRA_COLUMNS]


def data_table(columns: FrameColumns, fps: int, with_state: bool, width: int) -> Any:
    """The data file: one row per frame."""
    import pyarrow as pa

    frame_index = np.asarray(columns.frame_index, dtype=np.int64)
    table: dict[str, Any] = {}
    if with_state:
        for name, rows in ((STATE, columns.state), (ACTION, columns.action)):
            flat = pa.array(np.asarray(rows, dtype=np.float32).reshape(-1))
            table[name] = pa.FixedSizeListArray.from_arrays(flat, width)
    table["timestamp"] = pa.array((frame_index / fps).astype(np.float32))
    table["frame_index"] = pa.array(frame_index)
    table["episode_index"] = pa.array(columns.episode_index, pa.int64())
    table["index"] = pa.array(np.arange(len(frame_index), dtype=np.int64))
    table["task_index"] = pa.array(columns.task_index, pa.int64())
    table["capture_time"] = pa.array(columns.capture_time, pa.float64())
    table["seq"] = pa.array(columns.seq, pa.int64())
    return pa.table(table)


def features(joint_names: Sequence[str], with_state: bool, videos: Mapping[str, VideoWriter]) -> dict[str, Any]:
    """``info.json``'s ``features``: every column and camera with its dtype, shape and names."""
    out: dict[str, Any] = {}
    if with_state:
        for name in (STATE, ACTION):
            out[name] = {"dtype": "float32", "shape": [len(joint_names)], "names": list(joint_names)}
    for key, writer in videos.items():
        shape = [writer.height, writer.width, 3]
        out[key] = {
            "dtype": "video",
            "shape": shape,
            "names": ["height", "width", "channels"],
            "info": probe(writer.path),
        }
    out["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    for name in ("frame_index", "episode_index", "index", "task_index", "seq"):
        out[name] = {"dtype": "int64", "shape": [1], "names": None}
    out["capture_time"] = {"dtype": "float64", "shape": [1], "names": None}
    return out


def info(
    robot_type: str | None, fps: int, episodes: int, frames: int, tasks: int, feats: dict[str, Any]
) -> dict[str, Any]:
    """``meta/info.json``."""
    return {
        "codebase_version": CODEBASE_VERSION, "robot_type": robot_type, "total_episodes": episodes,
        "total_frames": frames, "total_tasks": tasks, "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB, "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "fps": fps, "splits": {"train": f"0:{episodes}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
        "features": feats,
    }  # fmt: skip


def write_parquet(table: Any, path: Path) -> None:
    """Write one parquet file (its folders made)."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def write_episodes(
    root: Path, lengths: list[int], tasks: list[list[str]], fps: int, video_keys: list[str], stats: list[dict[str, Any]]
) -> None:
    """``meta/episodes/chunk-000/file-000.parquet``: one row per episode (all in the first data and video files)."""
    import pyarrow as pa

    ends = np.cumsum(lengths).tolist()
    starts = [end - length for end, length in zip(ends, lengths, strict=True)]
    count = len(lengths)
    rows: dict[str, Any] = {
        "episode_index": pa.array(range(count), pa.int64()),
        "tasks": pa.array(tasks, pa.list_(pa.string())),
        "length": pa.array(lengths, pa.int64()),
        "data/chunk_index": pa.array([0] * count, pa.int64()),
        "data/file_index": pa.array([0] * count, pa.int64()),
        "dataset_from_index": pa.array(starts, pa.int64()),
        "dataset_to_index": pa.array(ends, pa.int64()),
    }
    for key in video_keys:
        rows[f"videos/{key}/chunk_index"] = pa.array([0] * count, pa.int64())
        rows[f"videos/{key}/file_index"] = pa.array([0] * count, pa.int64())
        rows[f"videos/{key}/from_timestamp"] = pa.array([s / fps for s in starts], pa.float64())
        rows[f"videos/{key}/to_timestamp"] = pa.array([e / fps for e in ends], pa.float64())
    for feature, values in stats[0].items():
        for stat in values:
            rows[f"stats/{feature}/{stat}"] = pa.array([episode[feature][stat] for episode in stats])
    rows["meta/episodes/chunk_index"] = pa.array([0] * count, pa.int64())
    rows["meta/episodes/file_index"] = pa.array([0] * count, pa.int64())
    write_parquet(pa.table(rows), root / EPISODES_FILE)


def write_tasks(root: Path, tasks: list[str]) -> None:
    """``meta/tasks.parquet``: ``task_index`` with the task strings as the pandas index ``task``."""
    import pyarrow as pa

    pandas = {
        "index_columns": ["task"],
        "column_indexes": [
            {"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
             "metadata": {"encoding": "UTF-8"}},
        ],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }  # fmt: skip
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    write_parquet(table.replace_schema_metadata({"pandas": json.dumps(pandas)}), root / TASKS_FILE)
