"""A LeRobotDataset v3 as a recording in memory (the import the export's round trip is checked with).

Reading the dataset is :class:`~modal_workers.media.lerobot_source.LeRobotReader`'s, which a session fed
from a dataset uses too.
"""

from __future__ import annotations

from contracts.recordings.manifest import SO101_JOINT_NAMES
from modal_workers.media.lerobot_source import STATE, LeRobotReader, camera_name
from modal_workers.recordings.model import Recording, RecordingBuilder


def dataset_recording(reader: LeRobotReader, *, session_id: str, kind: str, start_ts: float = 0.0) -> Recording:
    """The dataset as a recording: each row's images as frames with its state as their matched joints.

    Times are the rows' ``capture_time`` when the dataset has them, else ``start_ts`` plus the row's
    place at the dataset's rate; a reset is recorded at the start of every episode after the first.
    """
    width = int((reader.features.get(STATE, {}).get("shape") or [len(SO101_JOINT_NAMES)])[0])
    names = reader.state_names or (list(SO101_JOINT_NAMES) if width == 6 else [f"joint_{i}" for i in range(width)])
    builder = RecordingBuilder(session_id, kind, robot_type=reader.info.get("robot_type"), joint_names=names)
    episode = None
    for row, frame in enumerate(reader.frames()):
        ts = frame.capture_time if frame.capture_time is not None else start_ts + row / reader.fps
        if frame.episode_index != episode:
            if episode is not None:
                builder.control("reset", ts=ts, reason="next episode")
            episode = frame.episode_index
        for key, data in frame.images.items():
            builder.frame(data, ts=ts, joints=frame.state, camera=camera_name(key))
    return builder.build()
