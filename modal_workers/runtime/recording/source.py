"""What feeds a session that has a ``source`` (:mod:`contracts.specs.session_source`): its frames in order.

:func:`open_source` opens the source when the run starts, so a bad one fails the session at once
with a code (``recording_missing``, ``invalid_dataset``, ``invalid_archive``, ``archive_too_large``,
``input_missing`` …); it answers an iterator of :class:`SourceFrame`, read as the feeder goes (a
dataset's video is decoded row by row, a recording's images read one at a time):

* a recording (a replay): its frames with their matched joint samples and poses; a recorded reset
  comes before the first frame the worker took after it;
* a LeRobot dataset: one camera's image of each row and its ``observation.state`` as the joint
  sample at the row's time (lerobot's SO-101 degrees converted to radians:
  :func:`contracts.recordings.joints.named_radians`); the row's time is its ``capture_time`` when
  gpurelay exported it, else the feed's start plus the row's place at the dataset's rate; each new
  episode is a reset.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from contracts.recordings.joints import named_radians
from contracts.recordings.manifest import RecordedFrame, RecordingManifest
from contracts.specs.job_inputs import InputRef
from contracts.specs.session_source import DatasetSource, RecordingSource
from modal_workers.media.dataset_zip import UnpackLimits, unpack
from modal_workers.media.lerobot_source import LeRobotReader
from modal_workers.runtime import inputs as runtime_io
from modal_workers.runtime.errors import PermanentError
from modal_workers.runtime.recording.settings import SourceSettings
from services.common.recordings import RecordingUnreadableError, StoredRecording

OPEN_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class SourceFrame:
    """One frame to publish, its joint sample (published just before it) and whether a reset precedes it."""

    ts: float
    content_type: str
    data: bytes
    joints: list[float] | None = None
    joints_ts: float | None = None
    pose: list[float] | None = None
    reset: bool = False


def recording_frames(manifest: RecordingManifest, read: Callable[[str], bytes]) -> Iterator[SourceFrame]:
    """A recording's frames in order (images read as they are reached), resets where they came."""
    resets = sorted(c.ts for c in manifest.controls if c.action == "reset")
    done = 0
    for frame in manifest.frames:
        at = _order_time(frame)
        reset = False
        while done < len(resets) and resets[done] <= at:
            done, reset = done + 1, True
        joints = frame.joints
        yield SourceFrame(
            ts=frame.ts, content_type=frame.content_type, data=read(frame.key), pose=frame.pose, reset=reset,
            joints=None if joints is None else list(joints.angles), joints_ts=None if joints is None else joints.ts,
        )  # fmt: skip


def _order_time(frame: RecordedFrame) -> float:
    """When the worker took the frame (a control's clock), else its capture time."""
    return frame.processed_at if frame.processed_at is not None else frame.ts


def dataset_frames(reader: LeRobotReader, source: DatasetSource, start_ts: float) -> Iterator[SourceFrame]:
    """One camera's rows of the dataset (one episode, or all: each new one a reset)."""
    key = reader.camera_key(source.camera)
    episode: int | None = None
    for row, frame in enumerate(reader.frames(source.episode, [key])):
        ts = float(frame.capture_time) if frame.capture_time is not None else start_ts + row / reader.fps
        reset = episode is not None and frame.episode_index != episode
        episode = frame.episode_index
        state = None if frame.state is None else named_radians(reader.state_names, frame.state)
        data = frame.images[key]
        content_type = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
        yield SourceFrame(ts=ts, content_type=content_type, data=data, joints=state, joints_ts=ts, reset=reset)


def open_source(runtime: Any, ctx: Any, source: DatasetSource | RecordingSource) -> Iterator[SourceFrame]:
    """The source's frames; a source that cannot feed the session is a :class:`PermanentError`."""
    req = ctx.request
    if isinstance(source, RecordingSource):
        stored = StoredRecording(runtime.storage, req.storage_prefix, req.tenant, source.session_id)
        try:
            manifest = runtime.call(stored.manifest(), OPEN_TIMEOUT_S)
        except RecordingUnreadableError as exc:
            raise PermanentError("recording_unreadable", str(exc)) from exc
        if manifest is None or not manifest.frames:
            raise PermanentError("recording_missing", f"session {source.session_id} has no recorded frame")
        return recording_frames(manifest, lambda name: runtime.call(stored.read(name), OPEN_TIMEOUT_S))
    settings = SourceSettings()
    coro = runtime_io.download_input(
        runtime.storage, req.storage_prefix, req.tenant, InputRef(upload_id=source.upload_id), ctx.work_dir,
        "source.zip", max_bytes=runtime.max_input_bytes,
    )  # fmt: skip
    archive = runtime.call(coro, runtime.input_timeout_s)
    limits = UnpackLimits(max_entries=settings.max_entries, max_bytes=settings.max_unpacked_bytes)
    reader = LeRobotReader(unpack(archive, ctx.work_dir / "source", limits))
    archive.unlink(missing_ok=True)
    reader.camera_key(source.camera)  # an unknown camera fails now
    if source.episode is not None and all(int(e["episode_index"]) != source.episode for e in reader.episodes):
        raise PermanentError("invalid_dataset", f"the dataset has no episode {source.episode}")
    return dataset_frames(reader, source, time.time())
