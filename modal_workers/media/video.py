"""Video input for workloads: probing with clear errors, and decoding overlapped with compute.

:func:`probe` opens a file (in a thread, time-bounded) and raises
:class:`~modal_workers.runtime.worker_runtime.PermanentError` with a code a user can act on:

* ``invalid_video``: not a video OpenCV can open (or decoding stalls);
* ``empty_video``: no frames (an empty file, or a container without frames);
* ``truncated_video``: an MP4 without its index (``moov``), or fewer frames decode than it declares;
* ``video_too_long``: longer than ``max_duration_s`` (declared, or found while decoding).

:class:`FrameReader` decodes, samples (``sample_fps``) and downscales (``width``) in a reader
thread that feeds a bounded queue, so decoding overlaps the consumer's compute; every wait on it is
bounded (``frame_timeout_s``). Frame ``k`` of a ``sample_fps`` stream is the first decoded frame
of the ``k``-th sampling interval (:func:`sampled_count` gives how many there are).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from modal_workers.runtime.worker_runtime import PermanentError

PROBE_TIMEOUT_S = 30.0
FRAME_TIMEOUT_S = 30.0
TRUNCATION_TOLERANCE = 0.1
"""Fewer decoded frames than declared by more than this share (and one frame) means truncated
(loose: some containers only estimate their frame count)."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container declares: frame count (0 if unknown), rate, size and duration."""

    path: Path
    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        """Declared duration in seconds."""
        return self.frames / self.fps if self.fps > 0 else 0.0


@dataclass(frozen=True)
class Frame:
    """One kept frame: its index in the decoded stream, its time, and the (downscaled) BGR image."""

    index: int
    time_s: float
    image: np.ndarray[Any, Any]


def _open(path: Path) -> tuple[Any, VideoInfo]:
    size = path.stat().st_size
    if size == 0:
        raise PermanentError("empty_video", "The file is empty: upload a video with at least two frames.")
    with path.open("rb") as handle:
        head = handle.read(64 * 1024)
        handle.seek(max(0, size - 1024 * 1024))
        tail = handle.read()
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        is_mp4 = head[4:8] == b"ftyp"  # ISO BMFF: MP4, MOV, M4V
        if is_mp4 and b"moov" not in head and b"moov" not in tail:
            raise PermanentError(
                "truncated_video", "The MP4 file has no index (moov): it looks truncated; upload it again."
            )
        if is_mp4:
            raise PermanentError("empty_video", "The MP4 file holds no decodable frames.")
        raise PermanentError("invalid_video", "The file is not a video OpenCV can decode (use MP4/H.264, MKV or AVI).")
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not 0 < fps <= 1000 or math.isnan(fps):
        cap.release()
        raise PermanentError("invalid_video", f"The video has no usable frame rate ({fps}).")
    info = VideoInfo(
        path, max(frames, 0), fps, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    )
    return cap, info


def _bounded(fn: Any, timeout_s: float, what: str) -> Any:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"video-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise PermanentError("invalid_video", f"Opening the video took more than {timeout_s:.0f} s; it may be corrupt.")
    if "error" in box:
        raise box["error"]
    return box["value"]


def probe(path: Path, max_duration_s: float | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> VideoInfo:
    """The video's declared properties; a :class:`PermanentError` for a file that cannot be used."""

    def run() -> VideoInfo:
        cap, info = _open(path)
        cap.release()
        return info

    info: VideoInfo = _bounded(run, timeout_s, "probe")
    if max_duration_s is not None and info.duration_s > max_duration_s:
        raise _too_long(info.duration_s, max_duration_s)
    return info


def _too_long(duration_s: float, limit_s: float) -> PermanentError:
    return PermanentError(
        "video_too_long",
        f"The video lasts {duration_s:.1f} s, more than the limit of {limit_s:.1f} s (params.max_duration_s).",
    )


def sampled_count(frames: int, fps: float, sample_fps: float | None) -> int:
    """How many of ``frames`` decoded frames a ``sample_fps`` stream keeps."""
    if not sample_fps or sample_fps >= fps:
        return frames
    return len({math.floor(i * sample_fps / fps + 1e-9) for i in range(frames)})


def scaled_size(width: int, height: int, target_width: int | None) -> tuple[int, int]:
    """``(w, h)`` for a target width (never upscaled), both even so any encoder accepts them."""
    if not target_width or target_width >= width:
        return width - width % 2, height - height % 2
    h = round(height * target_width / width)
    return target_width - target_width % 2, max(2, h - h % 2)


class FrameReader:
    """Decoded, sampled, downscaled frames from a reader thread through a bounded queue.

    Use as a context manager and iterate; :attr:`decoded` and :attr:`kept` count frames. The
    iteration raises the reader's :class:`PermanentError` (``empty_video``, ``truncated_video``,
    ``video_too_long``) where it happens, and ``invalid_video`` if no frame comes within
    ``frame_timeout_s``.
    """

    def __init__(
        self,
        info: VideoInfo,
        *,
        width: int | None = None,
        sample_fps: float | None = None,
        max_duration_s: float | None = None,
        queue_size: int = 8,
        frame_timeout_s: float = FRAME_TIMEOUT_S,
    ) -> None:
        self.info, self.sample_fps, self.max_duration_s = info, sample_fps, max_duration_s
        self.size = scaled_size(info.width, info.height, width)
        self.frame_timeout_s = frame_timeout_s
        self.decoded = self.kept = 0
        self._queue: queue.Queue[Frame | BaseException | None] = queue.Queue(queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="video-reader", daemon=True)

    @property
    def fps(self) -> float:
        """The rate of the kept stream."""
        return min(self.sample_fps, self.info.fps) if self.sample_fps else self.info.fps

    def __enter__(self) -> FrameReader:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the reader thread: it ends at its next frame; one stuck in a decoder is left behind."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.frame_timeout_s)

    def _put(self, item: Frame | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        cap = None
        try:
            cap, _ = _open(self.info.path)
            self._decode(cap)
            self._put(None)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)
        finally:
            if cap is not None:
                cap.release()

    def _decode(self, cap: Any) -> None:
        fps, bucket = self.info.fps, -1
        while not self._stop.is_set():
            ok, image = cap.read()
            if not ok:
                break
            index, self.decoded = self.decoded, self.decoded + 1
            time_s = index / fps
            if self.max_duration_s is not None and time_s > self.max_duration_s:
                raise _too_long(time_s, self.max_duration_s)
            if self.sample_fps and self.sample_fps < fps:
                current = math.floor(index * self.sample_fps / fps + 1e-9)
                if current == bucket:
                    continue
                bucket = current
            if (image.shape[1], image.shape[0]) != self.size:
                image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
            self.kept += 1
            if not self._put(Frame(index, time_s, image)):
                return
        declared = self.info.frames
        if self.decoded == 0:
            raise PermanentError("empty_video", "The video has no decodable frames.")
        if declared and self.decoded < declared - max(1, TRUNCATION_TOLERANCE * declared):
            raise PermanentError(
                "truncated_video",
                f"Only {self.decoded} of the {declared} frames the file declares could be decoded: "
                "it looks truncated or corrupt; upload it again.",
            )

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                item = self._queue.get(timeout=self.frame_timeout_s)
            except queue.Empty:
                raise PermanentError(
                    "invalid_video", f"No frame decoded within {self.frame_timeout_s:.0f} s; the file may be corrupt."
                ) from None
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
