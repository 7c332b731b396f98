"""Recordings as a LeRobotDataset v3 folder (what ``lerobot`` ≥ 0.4 loads), written with pyarrow and PyAV.

One episode per recording (or one per stretch between resets, ``split_on_reset``), all in one data
file and one video file per camera::

    meta/info.json                        codebase_version v3.0, robot_type, fps, totals, features
    meta/stats.json                       per feature: min, max, mean, std, count, q01 … q99
    meta/tasks.parquet                    task_index, task (the pandas index)
    meta/episodes/chunk-000/file-000.parquet   one row per episode: its length, task, where its rows
                                          and video lie, its own stats
    data/chunk-000/file-000.parquet       one row per frame (below)
    videos/observation.images.<camera>/chunk-000/file-000.mp4   frame i of the file at i / fps

Frame columns: ``observation.state`` float32[n] (the frame's matched joints, radians, in the
recording's joint order), ``action`` float32[n], ``timestamp`` (float32, ``frame_index / fps``),
``frame_index``, ``episode_index``, ``index``, ``task_index``, and two of gpurelay's that policies
ignore (no ``observation.`` prefix): ``capture_time`` (float64, UNIX s) and ``seq`` (the session's
frame number).

``action`` is the next frame's state (the last frame's: its own). LeRobot's teleoperation datasets
record the leader arm's command; a session has only the follower's measured joints, and the state
the arm reached next is the closest measure of what it was commanded to do at this frame.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modal_workers.media.image_codec import decode_image
from modal_workers.recordings import lerobot_meta as meta
from modal_workers.recordings.lerobot_stats import feature_stats, image_stats, sample_every, shrink
from modal_workers.recordings.model import EpisodeRow, Recording, episode_rows, median_fps
from modal_workers.recordings.video import CODECS, CRF, VideoWriter, even_size, pick_codec


@dataclass(frozen=True)
class LeRobotOptions:
    """How recordings become a dataset."""

    fps: int | None = None
    """The dataset's rate; ``None``: from the median interval between the first recording's frames."""
    split_on_reset: bool = False
    codecs: tuple[str, ...] = CODECS
    crf: int = CRF


@dataclass(frozen=True)
class LeRobotSummary:
    """What was written."""

    root: Path
    fps: int
    episodes: int
    frames: int
    codec: str | None
    frames_left_out: int = 0
    """Frames without matched joints in a recording whose other frames have them."""


def write_lerobot(root: Path, recordings: Sequence[Recording], options: LeRobotOptions | None = None) -> LeRobotSummary:
    """Write ``recordings`` as a LeRobotDataset v3 under ``root``; ``ValueError`` when they do not fit one."""
    options = options or LeRobotOptions()
    if not recordings:
        raise ValueError("no recording to write")
    first, cameras = recordings[0].manifest, recordings[0].cameras()
    if any(r.manifest.joint_names != first.joint_names or r.cameras() != cameras for r in recordings[1:]):
        raise ValueError("the recordings of one dataset must share their joint names and cameras")
    episodes = [(r, rows) for r in recordings for rows in episode_rows(r, split_on_reset=options.split_on_reset)]
    if not episodes:
        raise ValueError("the recordings hold no frame to write")
    with_state = episodes[0][1][0].state is not None
    if any((rows[0].state is not None) != with_state for _, rows in episodes):
        raise ValueError("either every recording of one dataset has matched joints or none has")
    fps = options.fps or median_fps([f for f in first.frames if f.camera == cameras[0]])
    tasks = list(dict.fromkeys(_task(r) for r, _ in episodes))
    total = sum(len(rows) for _, rows in episodes)
    videos, columns = _Videos(root, fps, options, sample_every(total)), meta.FrameColumns()
    try:
        for number, (recording, rows) in enumerate(episodes):
            videos.start_episode()
            for i, row in enumerate(rows):
                for camera in cameras:
                    videos.add(camera, decode_image(recording.image(row.images[camera])), i == 0)
                _add_row(columns, rows, i, number, tasks.index(_task(recording)), with_state)
    finally:
        videos.close()
    data = meta.data_table(columns, fps, with_state, len(first.joint_names))
    meta.write_parquet(data, root / meta.DATA_FILE)
    episode_stats = [_stats(data, videos.samples, with_state, k) for k in range(len(episodes))]
    lengths, keys = [len(rows) for _, rows in episodes], [meta.image_key(c) for c in cameras]
    meta.write_episodes(root, lengths, [[_task(r)] for r, _ in episodes], fps, keys, episode_stats)
    meta.write_tasks(root, tasks)
    features = meta.features(first.joint_names, with_state, {meta.image_key(c): w for c, w in videos.writers.items()})
    info = meta.info(first.robot_type, fps, len(episodes), total, len(tasks), features)
    (root / meta.INFO_FILE).write_text(json.dumps(info, indent=4))
    (root / meta.STATS_FILE).write_text(json.dumps(_stats(data, videos.samples, with_state, None), indent=4))
    main = [f for r in recordings for f in r.manifest.frames if f.camera == cameras[0]]
    left_out = sum(f.joints is None for f in main) if with_state else 0
    return LeRobotSummary(root, fps, len(episodes), total, videos.codec, left_out)


def _task(recording: Recording) -> str:
    return recording.manifest.task or f"gpurelay {recording.manifest.kind} session"


class _Videos:
    """Each camera's video (opened at its first frame, at that frame's size) and its stats samples per episode."""

    def __init__(self, root: Path, fps: int, options: LeRobotOptions, stride: int) -> None:
        self.root, self.fps, self.options, self.stride = root, fps, options, stride
        self.writers: dict[str, VideoWriter] = {}
        self.samples: dict[str, list[list[np.ndarray]]] = {}
        self.codec: str | None = None
        self._episodes = 0

    def start_episode(self) -> None:
        self._episodes += 1

    def add(self, camera: str, rgb: np.ndarray, first_of_episode: bool) -> None:
        writer = self.writers.get(camera)
        if writer is None:
            width, height = even_size(rgb.shape[1], rgb.shape[0])
            self.codec = pick_codec(width, height, self.fps, self.options.codecs)
            path = self.root / meta.video_file(meta.image_key(camera))
            writer = VideoWriter(path, fps=self.fps, width=width, height=height, codec=self.codec, crf=self.options.crf)
            self.writers[camera] = writer
        groups = self.samples.setdefault(camera, [])
        groups.extend([] for _ in range(self._episodes - len(groups)))
        if first_of_episode or writer.frames % self.stride == 0:
            groups[-1].append(shrink(rgb))
        writer.add(rgb)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def _add_row(
    columns: meta.FrameColumns, rows: list[EpisodeRow], i: int, episode: int, task: int, with_state: bool
) -> None:
    row = rows[i]
    if with_state:
        assert row.state is not None
        columns.state.append(row.state)
        following = rows[i + 1].state if i + 1 < len(rows) else row.state
        columns.action.append(following or row.state)
    columns.frame_index.append(i)
    columns.episode_index.append(episode)
    columns.task_index.append(task)
    columns.capture_time.append(row.ts)
    columns.seq.append(row.seq)


def _stats(
    data: Any, samples: dict[str, list[list[np.ndarray]]], with_state: bool, episode: int | None
) -> dict[str, Any]:
    """Stats of the whole dataset (``episode`` None) or of one episode's rows and samples."""
    if episode is not None:
        import pyarrow.compute as pc

        data = data.filter(pc.equal(data["episode_index"], episode))
    stats = {name: feature_stats(np.asarray(data[name].to_pylist())) for name in meta.numeric_columns(with_state)}
    for camera, groups in samples.items():
        chosen = groups if episode is None else groups[episode : episode + 1]
        flat = [image for group in chosen for image in group]
        if flat:
            stats[meta.image_key(camera)] = image_stats(flat)
    return stats
