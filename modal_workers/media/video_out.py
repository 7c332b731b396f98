"""Video output: the main file and, from the same frames, a WebM rendition browsers play.

Workloads write their videos with OpenCV's ``mp4v`` (MPEG-4 Part 2), which no browser decodes; the
OpenCV wheel has no H.264 encoder but does write VP8 in WebM. :class:`Renditions` writes each frame
to the main file and, when asked, to a VP8 ``.webm`` beside it, so the second rendition needs no
second decode. The WebM is a preview, cheap next to the analysis: at most ``WEBM_WIDTH`` pixels
wide (downscaled, never upscaled) and at most ``WEBM_FPS`` frames per second (every ``k``-th frame,
the smallest ``k`` that fits, played at ``fps / k``, so it lasts as long as the main file).

Why VP8 and a preview: VP8 costs many times ``mp4v``'s CPU per frame and VP9 more than twice VP8's
(for a somewhat smaller file), so a full-size rendition would cost as much as the job's own
per-frame work; a quarter of the pixels at half the frame rate keeps the job's frame rate (the
lap_compare rows of BENCHMARKS.md include the preview).

Settings (environment): ``GPURELAY_VIDEO_WEBM`` (``0`` turns the WebM rendition off; default on),
``GPURELAY_VIDEO_WEBM_WIDTH`` (the preview's largest width in pixels, default 320),
``GPURELAY_VIDEO_WEBM_FPS`` (its highest frame rate, default 12; ``0``: every frame).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from modal_workers.media.video import scaled_size

WEBM_FOURCC = "VP80"
WEBM_TYPE = "video/webm"
WEBM_ENV = "GPURELAY_VIDEO_WEBM"
WEBM_WIDTH_ENV = "GPURELAY_VIDEO_WEBM_WIDTH"
WEBM_FPS_ENV = "GPURELAY_VIDEO_WEBM_FPS"
WEBM_WIDTH = 320
WEBM_FPS = 12.0


@dataclass(frozen=True)
class Preview:
    """The WebM preview's bounds: largest width (px) and highest frame rate (``0``: no bound)."""

    width: int = WEBM_WIDTH
    max_fps: float = WEBM_FPS

    def step(self, fps: float) -> int:
        """Keep every ``step``-th frame of an ``fps`` stream."""
        return max(1, math.ceil(fps / self.max_fps - 1e-9)) if self.max_fps > 0 else 1


def preview_settings(environ: Mapping[str, str] = os.environ) -> Preview | None:
    """The WebM preview's bounds from the environment, or ``None`` where it is turned off."""
    if environ.get(WEBM_ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        return None
    width = environ.get(WEBM_WIDTH_ENV, "").strip()
    fps = environ.get(WEBM_FPS_ENV, "").strip()
    return Preview(max(64, int(width)) if width else WEBM_WIDTH, max(0.0, float(fps)) if fps else WEBM_FPS)


def _open(path: Path, fourcc: str, fps: float, size: tuple[int, int]) -> Any:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path.name} with codec {fourcc}")
    return writer


class Renditions:
    """One ``fourcc`` video at ``path`` and, unless ``webm`` is ``None``, a VP8 preview at ``webm``
    within ``preview``'s bounds.

    ``write(image)`` adds a frame (``size``, BGR) to both; ``release()`` finishes both files;
    ``abort()`` finishes and removes them. Not thread-safe: one writer thread calls it.
    """

    def __init__(
        self,
        path: Path,
        fps: float,
        size: tuple[int, int],
        fourcc: str = "mp4v",
        webm: Path | None = None,
        preview: Preview | None = None,
    ) -> None:
        preview = preview or Preview()
        self.paths = [path] + ([webm] if webm is not None else [])
        self.size, self.step, self.index = size, preview.step(fps), 0
        self.webm_fps = fps / self.step
        self.webm_size = scaled_size(size[0], size[1], preview.width) if webm is not None else None
        self._main = _open(path, fourcc, fps, size)
        self._webm = _open(webm, WEBM_FOURCC, self.webm_fps, self.webm_size) if webm and self.webm_size else None

    @property
    def webm(self) -> Path | None:
        """The WebM file's path (``None`` when not written)."""
        return self.paths[1] if self._webm is not None else None

    def write(self, image: np.ndarray[Any, Any]) -> None:
        """Add one frame to each rendition."""
        self._main.write(image)
        keep, self.index = self.index % self.step == 0, self.index + 1
        if self._webm is None or self.webm_size is None or not keep:
            return
        if self.webm_size != self.size:
            image = cv2.resize(image, self.webm_size, interpolation=cv2.INTER_AREA)
        self._webm.write(image)

    def release(self) -> None:
        """Finish the files."""
        self._main.release()
        if self._webm is not None:
            self._webm.release()

    def abort(self) -> None:
        """Finish and remove the files (the run failed)."""
        self.release()
        for path in self.paths:
            path.unlink(missing_ok=True)
