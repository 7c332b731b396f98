"""A recording with its bytes at hand: the manifest plus a reader of the stored copies it names.

Exports read a frame's image or a snapshot through :attr:`Recording.read` (the session's storage in a
worker, a dict in tests and imports), one at a time, so an hour of frames never sits in memory.
:class:`RecordingBuilder` makes a recording in memory (tests, a LeRobot import). :func:`episode_rows`
cuts a recording into the rows of LeRobot episodes; :func:`median_fps` is the rate an export assumes.
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from contracts.recordings.manifest import (
    DEFAULT_CAMERA,
    SO101_JOINT_NAMES,
    MatchedJoints,
    RecordedControl,
    RecordedFrame,
    RecordedResult,
    RecordedSnapshot,
    RecordingManifest,
)

JPEG_MAGIC, PNG_MAGIC = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
DEFAULT_FPS = 30
"""The rate assumed for a recording with fewer than two frames."""
MAX_FPS = 120


@dataclass(frozen=True)
class Recording:
    """A manifest and ``read(key) -> bytes`` for the stored copies it names (frames, snapshots)."""

    manifest: RecordingManifest
    read: Callable[[str], bytes]

    def image(self, frame: RecordedFrame) -> bytes:
        """The frame's encoded image (JPEG or PNG)."""
        return self.read(frame.key)

    def cameras(self) -> list[str]:
        """The cameras of the frames, the first frame's camera first (it sets an episode's rows)."""
        return list(dict.fromkeys(frame.camera for frame in self.manifest.frames))


@dataclass(frozen=True)
class EpisodeRow:
    """One time step of an episode: a frame of each camera and the row's joint state."""

    seq: int
    ts: float
    images: dict[str, RecordedFrame]
    state: list[float] | None


def content_type_of(data: bytes) -> Literal["image/jpeg", "image/png"]:
    """``image/jpeg`` or ``image/png`` by magic bytes; ``ValueError`` for anything else."""
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if data.startswith(PNG_MAGIC):
        return "image/png"
    raise ValueError("a frame must be a JPEG or PNG image")


def median_fps(frames: Sequence[RecordedFrame]) -> int:
    """The frame rate from the median interval between capture times (1 … :data:`MAX_FPS`)."""
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(frames) if b.ts > a.ts]
    if not gaps:
        return DEFAULT_FPS
    return max(1, min(MAX_FPS, round(1.0 / statistics.median(gaps))))


def episode_rows(recording: Recording, *, split_on_reset: bool = False) -> list[list[EpisodeRow]]:
    """The recording's rows, one list per episode (the whole session, or cut at each reset).

    Rows follow the first camera's frames; every other camera gives each row its frame nearest in
    capture time. When any frame has matched joints, a frame without them is left out (a dataset
    row needs a measured state); otherwise rows carry no state.
    """
    cameras = recording.cameras()
    if not cameras:
        return []
    frames = recording.manifest.frames
    main = [f for f in frames if f.camera == cameras[0]]
    others = {c: [f for f in frames if f.camera == c] for c in cameras[1:]}
    with_state = any(f.joints is not None for f in main)
    cuts = sorted(c.ts for c in recording.manifest.controls if c.action == "reset") if split_on_reset else []
    episodes: list[list[EpisodeRow]] = [[] for _ in range(len(cuts) + 1)]
    for frame in main:
        if with_state and frame.joints is None:
            continue
        images = {cameras[0]: frame, **{c: _nearest(fs, frame.ts) for c, fs in others.items()}}
        state = list(frame.joints.angles) if frame.joints is not None else None
        episodes[bisect.bisect_right(cuts, frame.ts)].append(EpisodeRow(frame.seq, frame.ts, images, state))
    return [rows for rows in episodes if rows]


def _nearest(frames: list[RecordedFrame], ts: float) -> RecordedFrame:
    times = [f.ts for f in frames]
    at = bisect.bisect_left(times, ts)
    candidates = [i for i in (at - 1, at) if 0 <= i < len(frames)]
    return frames[min(candidates, key=lambda i: abs(times[i] - ts))]


@dataclass
class RecordingBuilder:
    """Builds a :class:`Recording` in memory: frames, controls, results, snapshots and their bytes."""

    session_id: str
    kind: str
    robot_type: str | None = "so101"
    joint_names: Sequence[str] = SO101_JOINT_NAMES
    task: str = ""
    blobs: dict[str, bytes] = field(default_factory=dict)
    _frames: list[RecordedFrame] = field(default_factory=list)
    _controls: list[RecordedControl] = field(default_factory=list)
    _results: list[RecordedResult] = field(default_factory=list)
    _snapshots: list[RecordedSnapshot] = field(default_factory=list)

    def frame(
        self,
        data: bytes,
        *,
        ts: float,
        joints: Sequence[float] | None = None,
        joints_ts: float | None = None,
        camera: str = DEFAULT_CAMERA,
    ) -> RecordedFrame:
        """Add a frame (seq: the next) with its matched joint sample (taken at ``joints_ts``, default ``ts``)."""
        content_type = content_type_of(data)
        seq = len(self._frames) + 1
        key = f"frames/{camera}/{seq:08d}.{'jpg' if content_type == 'image/jpeg' else 'png'}"
        matched = None if joints is None else MatchedJoints(ts=ts if joints_ts is None else joints_ts, angles=joints)
        frame = RecordedFrame(seq=seq, ts=ts, camera=camera, content_type=content_type, key=key, joints=matched)
        self.blobs[key] = data
        self._frames.append(frame)
        return frame

    def control(self, action: Literal["stop", "reset"], *, ts: float, reason: str | None = None) -> None:
        """Add a stop or reset."""
        self._controls.append(RecordedControl(ts=ts, action=action, reason=reason))

    def result(self, *, ts: float, first_seq: int, last_seq: int, text: str | None = None, **data: Any) -> None:
        """Add a result (chunk: the next) over frames ``first_seq..last_seq``."""
        chunk = len(self._results) + 1
        self._results.append(
            RecordedResult(ts=ts, chunk=chunk, first_seq=first_seq, last_seq=last_seq, text=text, data=data)
        )

    def snapshot(self, data: bytes, *, ts: float, seq: int, name: str, content_type: str) -> None:
        """Add a snapshot (a PLY, a JSON document …) covering frames up to ``seq``."""
        key = f"snapshots/{len(self._snapshots) + 1:06d}-{name}"
        self.blobs[key] = data
        self._snapshots.append(RecordedSnapshot(ts=ts, seq=seq, name=name, content_type=content_type, key=key))

    def build(self) -> Recording:
        """The recording (its manifest validated) reading from :attr:`blobs`."""
        manifest = RecordingManifest(
            session_id=self.session_id, kind=self.kind, robot_type=self.robot_type,
            joint_names=list(self.joint_names), task=self.task, frames=self._frames, controls=self._controls,
            results=self._results, snapshots=self._snapshots,
        )  # fmt: skip
        return Recording(manifest, self.blobs.__getitem__)
