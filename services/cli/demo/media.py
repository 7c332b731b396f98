"""Synthetic lap videos for ``gpurelay demo``: a car driving round an oval track, drawn with OpenCV."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 320, 240, 24


def _track_point(t: float) -> tuple[int, int]:
    """The car's position at lap fraction ``t`` (0..1) on an oval."""
    angle = 2 * math.pi * t
    return int(WIDTH / 2 + 120 * math.cos(angle)), int(HEIGHT / 2 + 80 * math.sin(angle))


def write_lap_video(path: Path, lap_seconds: float, *, wobble: float = 0.0) -> Path:
    """One lap of ``lap_seconds`` (a slower lap has more frames), written as mp4 (mp4v)."""
    frames = max(2, round(lap_seconds * FPS))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    rng = np.random.default_rng(7)
    background = rng.integers(40, 70, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    cv2.ellipse(background, (WIDTH // 2, HEIGHT // 2), (120, 80), 0, 0, 360, (90, 90, 90), 18)
    try:
        for index in range(frames):
            t = index / frames
            # A lap is not driven at constant speed: slower in the bends, plus the driver's wobble.
            t += 0.03 * math.sin(4 * math.pi * t) + wobble * math.sin(2 * math.pi * t)
            frame = background.copy()
            x, y = _track_point(t)
            cv2.rectangle(frame, (x - 9, y - 6), (x + 9, y + 6), (30, 30, 230), -1)
            cv2.putText(frame, f"{index / FPS:4.1f}s", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
            writer.write(frame)
    finally:
        writer.release()
    return path
