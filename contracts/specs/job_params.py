"""Parameters of the batch kinds (lap_compare, pose, nerf, session_export) and the base every params model shares.

Every model forbids unknown fields and bounds every number, so a spec that validates is a spec a
worker can run.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from contracts.base import Contract
from contracts.ids import ResourceId

_STRICT = ConfigDict(extra="forbid", frozen=True)

# A relative path of safe segments: no leading '/', no '..', no backslash, no white space.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")


def safe_relative_path(value: str, what: str) -> str:
    """``value`` when it is a relative path of safe segments (no ``..``, no leading ``/``), else ValueError."""
    if not _SAFE_PATH.fullmatch(value):  # each segment starts with [A-Za-z0-9_], so no '..'
        raise ValueError(f"{what} must be a relative path of letters, digits and _ - . / (got {value!r})")
    return value


class JobParams(Contract):
    """Base of the per-kind parameter models."""

    model_config = _STRICT


class LapCompareParams(JobParams):
    """Dense optical flow on one or two lap videos."""

    flow_method: Literal["farneback", "dis"] = "farneback"
    downscale_width: int = Field(default=640, ge=64, le=1920, description="Frames are resized to this width.")
    max_duration_s: float = Field(default=600.0, gt=0, le=3600, description="Longer videos fail with video_too_long.")
    fps_sample: float | None = Field(default=None, gt=0, le=240, description="None: every frame.")


class PoseParams(JobParams):
    """YOLO pose estimation (and tracking) on a video."""

    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Weights file (.pt, .onnx, .engine). null: the deployment's default "
        "(GPURELAY_POSE_MODEL on the workers, else yolo26n-pose.pt).",
    )
    batch_size: int = Field(default=8, ge=1, le=64)
    conf: float = Field(default=0.25, ge=0.0, le=1.0)
    iou: float = Field(default=0.7, ge=0.0, le=1.0)
    imgsz: int = Field(default=640, ge=64, le=1920, multiple_of=32)
    track: bool = True
    vid_stride: int = Field(default=1, ge=1, le=30)

    @field_validator("model")
    @classmethod
    def _model_path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        safe_relative_path(value, "model")
        if not value.endswith((".pt", ".onnx", ".engine")):
            raise ValueError("model must end with .pt, .onnx or .engine")
        return value


class NerfParams(JobParams):
    """COLMAP poses → NeRF training → a turntable of ``frames`` transparent PNGs in zips of ``batch_size``."""

    iterations: int = Field(default=15_000, ge=1, le=200_000, description="Training steps (a batch of rays each).")
    frames: int = Field(default=1440, ge=1, le=7200, description="Turntable frames rendered.")
    batch_size: int = Field(default=120, ge=1, le=7200, description="Frames per delivered zip.")
    downscale: int = Field(
        default=2, ge=1, le=16, description="Training images are shrunk by this factor (SfM is not: sfm_max_side)."
    )
    sfm_max_side: int = Field(
        default=1600, ge=160, le=8192, description="SfM runs on the photos shrunk to this longest side at most."
    )
    render_width: int = Field(default=800, ge=16, le=4096)
    render_height: int = Field(default=800, ge=16, le=4096)
    background: tuple[int, int, int] | None = Field(
        default=None,
        description="RGB (0-255) of a plain background to mask out of photos without alpha; "
        "None: estimated from the photos' borders.",
    )

    @field_validator("background")
    @classmethod
    def _rgb(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and not all(0 <= channel <= 255 for channel in value):
            raise ValueError("background channels must be within 0..255")
        return value


RECORDING_FORMATS = ("lerobot", "mcap", "rrd")
"""What a session's recording exports to (``session_export``'s ``params.format``)."""


class SessionExportParams(JobParams):
    """``session_export``: one session's recording as a file of ``format``."""

    session_id: ResourceId = Field(description="The session whose recording is exported.")
    format: Literal["lerobot", "mcap", "rrd"]
    fps: int | None = Field(default=None, ge=1, le=120, description="lerobot: None takes the frames' median rate.")
    split_on_reset: bool = Field(default=False, description="lerobot: a new episode at each reset.")
    video_codec: Literal["av1", "h264"] = Field(default="av1", description="lerobot: av1 falls back to h264.")
    task: str | None = Field(default=None, max_length=1000, description="lerobot: the task (default: the session's).")
