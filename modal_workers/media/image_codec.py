"""Images and video frames as a session's frames are: a JPEG or PNG to RGB and back, an MP4's frames read with PyAV.

Shared by what writes a LeRobot dataset (the recordings workload) and what reads one back as a
session's source (the runtime's feeder).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def decode_image(data: bytes) -> np.ndarray:
    """A JPEG or PNG as an RGB ``uint8`` array (H × W × 3); ``ValueError`` when it does not decode."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("an image does not decode")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """An RGB array as JPEG bytes."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(encoded.tobytes())


def read_frames(path: Path, *, start_s: float, end_s: float, fps: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, rgb)`` of the frames shown in ``[start_s, end_s)``; ``index`` counts from ``start_s`` at ``fps``."""
    import av

    half = 0.5 / fps
    with av.open(str(path)) as container:
        stream: Any = container.streams.video[0]
        if start_s > 0:
            container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            at = float(frame.time)
            if at < start_s - half:
                continue
            if at >= end_s - half:
                break
            yield round((at - start_s) * fps), frame.to_ndarray(format="rgb24")
