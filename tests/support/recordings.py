"""Recordings made for the export tests: OpenCV frames, joints with known values, results, controls, a PLY."""

from __future__ import annotations

import io

import numpy as np
from plyfile import PlyData, PlyElement

from modal_workers.recordings.model import Recording, RecordingBuilder
from tests.support.sessions import jpeg

START = 1_760_000_000.0
"""The first frame's capture time (UNIX s)."""


def angles(i: int) -> list[float]:
    """Frame ``i``'s known joint angles (radians), distinct per frame and per joint."""
    return [round(-1.2 + 0.037 * i + 0.41 * j, 6) for j in range(6)]


def capture_time(i: int, fps: int) -> float:
    """Frame ``i``'s capture time: ``i / fps`` after :data:`START`, jittered by up to 2 ms."""
    return START + i / fps + ((i * 7) % 3 - 1) * 0.002


def splat_ply(points: int = 7) -> bytes:
    """A 3DGS-style PLY with ``points`` vertices (x grows with the index) and DC colours."""
    vertex = np.zeros(points, dtype=[(n, "f4") for n in ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity")])
    vertex["x"] = np.arange(points, dtype=np.float32)
    vertex["f_dc_0"] = 1.0
    out = io.BytesIO()
    PlyData([PlyElement.describe(vertex, "vertex")]).write(out)
    return out.getvalue()


def session_recording(
    frames: int = 12,
    *,
    fps: int = 15,
    size: tuple[int, int] = (96, 64),
    reset_after: int | None = None,
    unmatched: tuple[int, ...] = (),
    cameras: tuple[str, ...] = ("main",),
    session_id: str = "ses_rec1",
) -> Recording:
    """A splat session's recording (at least 3 frames): ``frames`` JPEGs per camera with matched joints :func:`angles`
    (none for the indexes in ``unmatched``), a reset after frame ``reset_after``, two results, a stop
    and a PLY snapshot."""
    builder = RecordingBuilder(session_id, "splat", task="pick up the red cube")
    for i in range(frames):
        ts = capture_time(i, fps)
        for c, camera in enumerate(cameras):
            joints = None if i in unmatched else angles(i)
            builder.frame(
                jpeg(100 * c + i, size), ts=ts + c * 0.001, joints=joints, joints_ts=ts - 0.004, camera=camera
            )
        if reset_after == i:
            builder.control("reset", ts=ts + 0.5 / fps, reason="next try")
    end = capture_time(frames - 1, fps)
    builder.result(ts=START + 0.3, first_seq=1, last_seq=2, text="an arm reaches for a cube")
    last = frames * len(cameras)
    builder.result(ts=end, first_seq=3, last_seq=last, loss=0.25)
    builder.snapshot(splat_ply(), ts=end + 0.01, seq=last, name="snapshot.ply", content_type="application/octet-stream")
    builder.control("stop", ts=end + 0.02)
    return builder.build()
