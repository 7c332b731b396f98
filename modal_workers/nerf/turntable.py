"""The turntable: cameras on a circle around the scene's centre, RGBA frames, zips of frames, a preview.

The orbit (:func:`orbit_pose`) keeps the training cameras' mean elevation and distance and turns
about their mean up axis, starting at the first camera's azimuth; its focal length keeps their
horizontal field of view at the render width. A frame's alpha is the NeRF's accumulated opacity and
its colour is un-premultiplied, so a PNG composites correctly over anything. :class:`FrameZips`
packs frames into ``frames_0001.zip``, … of ``batch_size`` frames (stored, not deflated: PNGs are
compressed already) and hands each over the moment it is full; :class:`Preview` writes every few
frames over white into a small ``preview.mp4`` and, in the same pass, ``preview.webm``
(:class:`modal_workers.media.video_out.Renditions`: VP8, which browsers play).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from modal_workers.media.video_out import Preview as Bounds
from modal_workers.media.video_out import Renditions

PREVIEW_FRAMES = 120
PREVIEW_MAX_SIDE = 320
PREVIEW_FPS = 24.0


def orbit_pose(rig: dict[str, Any], index: int, frames: int) -> np.ndarray:
    """Camera-to-world (3×4, OpenGL axes) of turntable frame ``index`` of ``frames``, looking at the centre."""
    up, first = np.asarray(rig["up"]), np.asarray(rig["first"])
    side = np.cross(up, first)
    azimuth = 2 * math.pi * index / frames
    horizontal = math.cos(azimuth) * first + math.sin(azimuth) * side
    elevation, distance = rig["elevation"], rig["distance"]
    position = distance * (math.cos(elevation) * horizontal + math.sin(elevation) * up)
    forward = -position / np.linalg.norm(position)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    camera_up = np.cross(right, forward)
    return np.stack([right, camera_up, -forward, position], axis=1)


def straight_rgba(premultiplied: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 RGBA (straight alpha) from premultiplied RGB (h, w, 3) and alpha (h, w) in 0..1."""
    safe = np.maximum(alpha, 1e-3)[..., None]
    rgb = np.where(alpha[..., None] > 1e-3, premultiplied / safe, 0.0)
    rgba = np.concatenate([np.clip(rgb, 0, 1), np.clip(alpha, 0, 1)[..., None]], -1)
    return (rgba * 255).round().astype(np.uint8)


def png(rgba: np.ndarray) -> bytes:
    """RGBA uint8 as PNG bytes."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    if not ok:
        raise RuntimeError("a frame could not be encoded as PNG")
    return data.tobytes()


class FrameZips:
    """Frames into zips of ``batch_size``; ``deliver(path, number)`` gets each zip once it is full (or last)."""

    def __init__(self, folder: Path, batch_size: int, deliver: Callable[[Path, int], None]) -> None:
        self.folder, self.batch_size, self.deliver = folder, batch_size, deliver
        self.number, self.count = 0, 0
        self._zip: zipfile.ZipFile | None = None
        self._path: Path | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, index: int, data: bytes) -> None:
        """Add frame ``index`` (0-based) as ``frame_{index + 1:05d}.png``; deliver the zip when full."""
        if self._zip is None:
            self.number += 1
            self._path = self.folder / f"frames_{self.number:04d}.zip"
            self._zip = zipfile.ZipFile(self._path, "w", zipfile.ZIP_STORED)
        self._zip.writestr(f"frame_{index + 1:05d}.png", data)
        self.count += 1
        if self.count % self.batch_size == 0:
            self.close()

    def close(self) -> None:
        """Deliver the zip being filled, if any."""
        if self._zip is not None and self._path is not None:
            self._zip.close()
            path, self._zip, self._path = self._path, None, None
            self.deliver(path, self.number)


class Preview:
    """Every ``every``-th frame over white into an mp4 of at most :data:`PREVIEW_MAX_SIDE` pixels a side
    and, when ``webm`` is a path, a VP8 WebM of the same frames within ``bounds``."""

    def __init__(
        self, path: Path, width: int, height: int, frames: int, webm: Path | None = None, bounds: Bounds | None = None
    ) -> None:
        scale = min(1.0, PREVIEW_MAX_SIDE / max(width, height))
        self.size = (max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2))
        self.every = max(1, frames // PREVIEW_FRAMES)
        self.path = path
        self.writer = Renditions(path, PREVIEW_FPS, self.size, "mp4v", webm, bounds)

    @property
    def webm(self) -> Path | None:
        """The WebM rendition's path (``None`` when not written)."""
        return self.writer.webm

    def add(self, index: int, rgba: np.ndarray) -> None:
        """Write frame ``index`` if it is one of the preview's."""
        if index % self.every:
            return
        alpha = rgba[..., 3:].astype(np.float32) / 255.0
        over_white = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)
        small = cv2.resize(over_white.round().astype(np.uint8), self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))

    def close(self) -> Path:
        """Finish the video; its path."""
        self.writer.release()
        return self.path
