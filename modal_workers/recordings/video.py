"""Frames to an MP4 with PyAV, as a LeRobotDataset v3 keeps its cameras (reading them back is
:mod:`modal_workers.media.image_codec`'s).

Encoding follows LeRobot's defaults: AV1 by SVT-AV1 (``libsvtav1``, preset 12, CRF 30), ``yuv420p``,
a key frame every 2 frames (random access), frame ``i`` at ``i / fps``. :func:`pick_codec` takes the
first encoder of :data:`CODECS` this PyAV build has and can open at the frames' size, so a build
without SVT-AV1 (or a size it refuses) falls back to H.264 by x264, without B-frames (which readers
such as Rerun's would otherwise have to re-encode). ``yuv420p`` needs even sizes: an odd width or
height loses its last column or row.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

CODECS = ("libsvtav1", "libx264")
"""Encoders in order of preference."""
GOP = 2
CRF = 30
PIX_FMT = "yuv420p"


def even_size(width: int, height: int) -> tuple[int, int]:
    """The largest even size within ``width`` × ``height`` (what ``yuv420p`` can hold)."""
    return width - width % 2, height - height % 2


def _options(codec: str, crf: int) -> dict[str, str]:
    return {"crf": str(crf), "preset": "12"} if codec == "libsvtav1" else {"crf": str(crf)}


def pick_codec(width: int, height: int, fps: int, preferred: tuple[str, ...] = CODECS) -> str:
    """The first of ``preferred`` that opens here for ``width`` × ``height`` at ``fps``; ``ValueError`` if none."""
    import av

    for name in preferred:
        if name not in av.codecs_available:
            continue
        try:
            context: Any = av.CodecContext.create(name, "w")
            context.width, context.height, context.pix_fmt = width, height, PIX_FMT
            context.time_base = Fraction(1, fps)
            context.options = _options(name, CRF)
            context.open()
        except (av.FFmpegError, ValueError):
            continue
        return name
    raise ValueError(f"no video encoder of {preferred} opens for {width}x{height} here")


class VideoWriter:
    """An MP4 of RGB frames at a constant rate, at the size it was opened with."""

    def __init__(self, path: Path, *, fps: int, width: int, height: int, codec: str, crf: int = CRF) -> None:
        import av

        self.path, self.width, self.height, self.frames = path, width, height, 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out: Any = av.open(str(path), "w", format="mp4")
        stream: Any = self._out.add_stream(codec, rate=fps, options=_options(codec, crf))
        stream.width, stream.height, stream.pix_fmt = width, height, PIX_FMT
        stream.codec_context.gop_size = GOP
        stream.codec_context.max_b_frames = 0
        self._stream = stream

    def add(self, rgb: np.ndarray) -> None:
        """Append one frame (H × W × 3 ``uint8``), brought to the video's size."""
        import av
        import cv2

        over = (rgb.shape[0] - self.height, rgb.shape[1] - self.width)
        if over in ((0, 0), (0, 1), (1, 0), (1, 1)):  # the first frame's size, or it before its odd row/column went
            rgb = rgb[: self.height, : self.width]
        else:  # a camera that changed its size mid-session
            rgb = cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        self._out.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        self._out.mux(self._stream.encode())
        self._out.close()


def probe(path: Path) -> dict[str, Any]:
    """LeRobot's ``video.*`` info of an MP4's first video stream."""
    import av

    with av.open(str(path)) as container:
        stream: Any = container.streams.video[0]
        return {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,  # LeRobot 0.4's key
            "is_depth_map": False,  # later releases' key
            "video.fps": int(stream.base_rate),
            "video.channels": 3,
            "has_audio": len(container.streams.audio) > 0,
        }
