"""A LeRobotDataset v3 folder read back, episode by episode, as a session's source (an import).

:class:`LeRobotReader` reads ``meta/info.json`` (codebase v3.x), the episodes' parquet files and
the data files with pyarrow, and each camera's video with PyAV (or an ``image`` column's bytes).
:meth:`LeRobotReader.frames` yields one :class:`DatasetFrame` per row, in episode and frame order:
each camera's image as JPEG, ``observation.state`` (when the dataset has it), its ``timestamp``,
and gpurelay's ``capture_time`` and ``seq`` when the dataset was exported by gpurelay. Videos are
decoded as the rows are read, so an episode never sits in memory. A dataset that is not what its
``info.json`` says is a :class:`~modal_workers.runtime.errors.PermanentError` (``invalid_dataset``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modal_workers.media.image_codec import encode_jpeg, read_frames
from modal_workers.runtime.errors import PermanentError

STATE = "observation.state"
"""The dataset's joint-state column (LeRobot's name)."""


@dataclass(frozen=True)
class DatasetFrame:
    """One row of a dataset: its images (camera → JPEG or PNG bytes), state and times."""

    episode_index: int
    frame_index: int
    timestamp: float
    images: dict[str, bytes]
    state: list[float] | None
    capture_time: float | None = None
    seq: int | None = None


def _invalid(message: str) -> PermanentError:
    return PermanentError("invalid_dataset", message)


class LeRobotReader:
    """The episodes and frames of the dataset under ``root``."""

    def __init__(self, root: Path) -> None:
        import pyarrow.parquet as pq

        self.root = root
        try:
            self.info: dict[str, Any] = json.loads((root / "meta/info.json").read_text())
            version = str(self.info["codebase_version"])
            self.fps, self.features = int(self.info["fps"]), dict(self.info["features"])
            tables = [pq.read_table(p) for p in sorted((root / "meta/episodes").glob("*/*.parquet"))]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _invalid(f"meta/info.json or meta/episodes is unreadable: {exc}") from exc
        if not version.startswith("v3"):
            raise _invalid(f"codebase_version {version!r} is not v3 (convert it with lerobot first)")
        if self.fps <= 0 or not tables:
            raise _invalid("the dataset has no fps or no episode")
        self.episodes = sorted((row for t in tables for row in t.to_pylist()), key=lambda e: int(e["episode_index"]))
        self.cameras: list[str] = [str(k) for k, f in self.features.items() if f.get("dtype") in ("video", "image")]
        self.state_names: list[str] | None = self.features.get(STATE, {}).get("names")
        self._tables: dict[Path, Any] = {}

    @property
    def total_frames(self) -> int:
        """Rows in all episodes."""
        return sum(int(e["length"]) for e in self.episodes)

    def frames(self, episode: int | None = None, cameras: list[str] | None = None) -> Iterator[DatasetFrame]:
        """Every row (of ``episode`` only, when given), episode by episode, in frame order, with the
        images of ``cameras`` (feature keys; default: every camera)."""
        keys = self.cameras if cameras is None else cameras
        chosen = [e for e in self.episodes if episode is None or int(e["episode_index"]) == episode]
        if episode is not None and not chosen:
            raise _invalid(f"the dataset has no episode {episode}")
        for row in chosen:
            yield from self._episode(row, keys)

    def camera_key(self, camera: str | None) -> str:
        """The feature key of ``camera`` (a key, or a name such as ``wrist``); the first camera for ``None``."""
        if not self.cameras:
            raise _invalid("the dataset has no camera")
        if camera is None:
            return self.cameras[0]
        for key in self.cameras:
            if camera in (key, key.rpartition(".")[2], camera_name(key)):
                return key
        raise _invalid(f"the dataset has no camera {camera!r} (it has {', '.join(self.cameras)})")

    def _episode(self, episode: dict[str, Any], cameras: list[str]) -> Iterator[DatasetFrame]:
        import pyarrow.compute as pc

        number = int(episode["episode_index"])
        table = self._data(episode)
        rows = table.filter(pc.equal(table["episode_index"], number)).sort_by("frame_index").to_pylist()
        videos = {key: self._video(key, episode) for key in cameras if self.features[key].get("dtype") == "video"}
        for row in rows:
            images = {key: self._image(key, row, videos) for key in cameras}
            state = row.get(STATE)
            yield DatasetFrame(
                episode_index=number, frame_index=int(row["frame_index"]), timestamp=float(row["timestamp"]),
                images=images, state=None if state is None else [float(v) for v in state],
                capture_time=row.get("capture_time"), seq=row.get("seq"),
            )  # fmt: skip

    def _data(self, episode: dict[str, Any]) -> Any:
        import pyarrow.parquet as pq

        path = self.root / str(self.info["data_path"]).format(
            chunk_index=int(episode["data/chunk_index"]), file_index=int(episode["data/file_index"])
        )
        if path not in self._tables:
            self._tables = {path: pq.read_table(path)}  # one data file at a time
        return self._tables[path]

    def _video(self, key: str, episode: dict[str, Any]) -> Iterator[tuple[int, Any]]:
        path = self.root / str(self.info["video_path"]).format(
            video_key=key,
            chunk_index=int(episode[f"videos/{key}/chunk_index"]),
            file_index=int(episode[f"videos/{key}/file_index"]),
        )
        start, end = float(episode[f"videos/{key}/from_timestamp"]), float(episode[f"videos/{key}/to_timestamp"])
        return read_frames(path, start_s=start, end_s=end, fps=self.fps)

    def _image(self, key: str, row: dict[str, Any], videos: dict[str, Iterator[tuple[int, Any]]]) -> bytes:
        if key not in videos:  # an image column: {bytes, path}
            cell = row.get(key) or {}
            if not cell.get("bytes"):
                raise _invalid(f"frame {row['frame_index']} has no {key} image bytes")
            return bytes(cell["bytes"])
        wanted = round(float(row["timestamp"]) * self.fps)
        for index, rgb in videos[key]:
            if index == wanted:
                return encode_jpeg(rgb)
            if index > wanted:
                break
        raise _invalid(f"{key}'s video has no frame at {row['timestamp']} s of episode {row['episode_index']}")


def camera_name(key: str) -> str:
    """A camera's name in gpurelay from a feature key (``observation.images.wrist`` → ``wrist``)."""
    name = re.sub(r"[^a-z0-9_]", "_", key.rpartition(".")[2].lower())[:32]
    return name if name[:1].isalpha() else f"c{name}"[:32]
