"""Parameters of the live-session kinds (splat, vlm) and what every session shares.

Every session ends by itself: after ``idle_timeout_s`` without a frame, and at ``max_session_s``
(both GPU money, so both on by default). A worker that falls behind keeps the newest
``frame_buffer`` frames and counts the rest as dropped; one that is starting holds up to
``start_buffer`` frames for when it is ready. Each frame is matched with the bound
robot's joint sample nearest in time, within ``joint_tolerance_ms``; a frame waits up to
``joint_wait_ms`` (or ``joint_tolerance_ms`` when longer) for its sample (the two come by different
paths).

Fields left ``None`` take the deployment's default (documented per field): the seed's own clients
send no camera or robot description.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import Field, field_validator, model_validator

from contracts.specs.job_params import JobParams, safe_relative_path

ALERT_PATTERN_MAX = 256
"""Longest alert pattern accepted (a bound on what a regular expression search can cost)."""
VLM_DEFAULT_MODEL = "google/gemma-3-4b-it"
"""The VLM a deployment runs when ``GPURELAY_VLM_MODEL`` is not set."""
_PATH_MARKERS = ("..", "\\", "~", "\x00")


class SessionParams(JobParams):
    """What every live session has: its limits, its frame buffer and its joint matching."""

    idle_timeout_s: float = Field(default=300.0, gt=0, le=3600, description="The session ends after this long idle.")
    max_session_s: float = Field(default=3600.0, gt=0, le=86_400, description="The session ends after this long.")
    frame_buffer: int = Field(
        default=8, ge=1, le=256, description="Frames waiting for the worker; when it falls behind, the oldest drop."
    )
    joint_tolerance_ms: float = Field(
        default=50.0, ge=0, le=5000, description="A frame's joint sample is the nearest in time within this."
    )
    joint_wait_ms: float = Field(
        default=250.0,
        ge=0,
        le=5000,
        description="How long a frame waits for a joint sample at or after its time (the samples come by "
        "another path than the frames), or joint_tolerance_ms when that is longer; then it goes with the "
        "nearest it has.",
    )
    start_buffer: int = Field(
        default=64,
        ge=1,
        le=512,
        description="Frames held while the session starts or resumes (a model loading, a lost worker's frames "
        "replayed), all processed once it is ready; beyond it the oldest drop.",
    )


class CameraMount(JobParams):
    """Where the camera sits on its link: ``xyz`` in metres, ``rpy`` in radians (camera → link)."""

    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)


class CameraIntrinsics(JobParams):
    """Pinhole intrinsics in pixels (``fx``, ``fy``; ``cx``, ``cy`` default to the image centre) or a
    horizontal field of view ``hfov_deg``."""

    fx: float | None = Field(default=None, gt=0, le=100_000)
    fy: float | None = Field(default=None, gt=0, le=100_000)
    cx: float | None = Field(default=None, ge=0, le=100_000)
    cy: float | None = Field(default=None, ge=0, le=100_000)
    hfov_deg: float | None = Field(default=None, gt=0, lt=180)

    @model_validator(mode="after")
    def _one_way(self) -> CameraIntrinsics:
        focal = self.fx is not None and self.fy is not None
        if focal == (self.hfov_deg is not None):
            raise ValueError("give either fx and fy (cx, cy optional) or hfov_deg")
        return self


class SplatParams(SessionParams):
    """Live Gaussian-splat training from streamed frames and the robot's joint angles."""

    chunk_every: int = Field(default=50, ge=1, le=10_000, description="A chunk PLY every this many frames.")
    snapshot_every_s: float = Field(default=2.0, ge=0.1, le=600, description="The live PLY is refreshed this often.")
    sh_degree: int | None = Field(default=None, ge=0, le=3, description="None: 0 on CPU, 3 on CUDA.")
    max_gaussians: int = Field(default=200_000, ge=1_000, le=10_000_000)
    steps_per_frame: int = Field(default=30, ge=1, le=1_000, description="Training steps per frame received.")
    holdout_every: int | None = Field(
        default=None, ge=2, le=1_000,
        description="Every n-th frame (by seq) is held out of training and scores the final model (PSNR); None: none.",
    )  # fmt: skip
    urdf: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="A URDF the deployment ships (a name under its robot folder, never a download); "
        "None: GPURELAY_SPLAT_URDF.",
    )
    camera_link: str | None = Field(
        default=None, min_length=1, max_length=64, description="The link the camera is on; None: the deployment's."
    )
    camera_mount: CameraMount | None = Field(default=None, description="None: the deployment's mount.")
    intrinsics: CameraIntrinsics | None = Field(default=None, description="None: the deployment's intrinsics.")

    @field_validator("urdf")
    @classmethod
    def _urdf_name(cls, value: str | None) -> str | None:
        return None if value is None else safe_relative_path(value, "urdf")


class VlmAlert(JobParams):
    """Raise an alert when a chunk's answer matches ``pattern`` (a regular expression)."""

    pattern: str = Field(min_length=1, max_length=ALERT_PATTERN_MAX, description="Searched for in each answer.")
    message: str | None = Field(default=None, max_length=500, description="The alert's text; default: the pattern.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return value


class VlmParams(SessionParams):
    """Chunked inference on a stateful vision-language model session.

    Frames are grouped into chunks (closed at ``chunk_frames`` frames or ``chunk_seconds``,
    whichever comes first); each chunk's answer joins the conversation, which keeps the last
    ``context_tokens`` tokens of earlier turns as context for the next chunk.
    """

    model: str | None = Field(
        default=None, min_length=1, max_length=128, description="A model the deployment allows; None: its default."
    )
    prompt: str = Field(default="Describe what happens in these frames.", min_length=1, max_length=4000)
    system_prompt: str | None = Field(default=None, min_length=1, max_length=4000)
    chunk_frames: int = Field(default=8, ge=1, le=64, description="A chunk closes after this many frames.")
    chunk_seconds: float = Field(
        default=2.0, gt=0, le=60, description="A chunk also closes this many seconds after its first frame."
    )
    max_images_per_chunk: int = Field(
        default=4, ge=1, le=16, description="Frames of a chunk shown to the model (evenly spaced, first and last kept)."
    )
    max_new_tokens: int = Field(default=256, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0: greedy decoding.")
    context_tokens: int = Field(
        default=2048, ge=0, le=32_768, description="Token budget of earlier turns kept as context (oldest dropped)."
    )
    alert: VlmAlert | None = None

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        return None if value is None else safe_relative_path(value, "model")


def vlm_model_refusal(requested: str | None, default: str, allowed: Sequence[str] = ()) -> str | None:
    """Why a vlm session may not run ``requested`` here (``None``: it may; ``None`` requested is the default).

    The deployment's ``default`` is always allowed, other names only if listed in ``allowed``; a name
    shaped like a server path (absolute, ``..``, ``~``, a backslash) never is, listed or not. The
    reason names the allowed models but never a local directory (the default may be one). The
    gateway answers 422 with it at creation, the worker fails the session with it.
    """
    if requested is None or requested == default:
        return None
    if requested.startswith("/") or any(marker in requested for marker in _PATH_MARKERS):
        return f"the model {requested!r} is not a model name"
    if requested not in allowed:
        names = ", ".join(repr(name) for name in (default, *allowed) if not name.startswith("/"))
        return f"the model {requested!r} is not allowed here; allowed: {names}"
    return None
