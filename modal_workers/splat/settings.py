"""The splat workload's settings (``GPURELAY_SPLAT_*``), read in its worker process."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SplatSettings(BaseSettings):
    """The splat workload's deployment defaults (``GPURELAY_SPLAT_*``), read by its worker process.

    The seed's clients send no robot description, camera mount or intrinsics: a session's params
    override each of these, else they come from here. ``urdf`` names a file under ``robots_dir``
    (default: the URDFs shipped in ``modal_workers/assets``) or is an absolute path the operator
    chose; ``None`` means no forward kinematics (only frames sent with a pose are used).
    ``gpurelay dev`` sets ``GPURELAY_SPLAT_URDF=synthetic_arm.urdf`` for its workers.
    """

    model_config = SettingsConfigDict(env_prefix="GPURELAY_SPLAT_", extra="ignore", frozen=True)

    urdf: str | None = Field(default=None, description="The robot's URDF (a name under robots_dir, or a path).")
    robots_dir: Path | None = Field(default=None, description="Where session params may pick a URDF by name.")
    camera_link: str = Field(default="camera_link", min_length=1, description="The link the camera is on.")
    camera_xyz: tuple[float, float, float] = Field(default=(0.0, 0.0, 0.0), description="Camera→link offset (m).")
    camera_rpy: tuple[float, float, float] = Field(default=(0.0, 0.0, 0.0), description="Camera→link rpy (rad).")
    hfov_deg: float = Field(default=60.0, gt=0, lt=180, description="Horizontal field of view, unless fx/fy are set.")
    fx: float | None = Field(default=None, gt=0, description="Focal length in pixels at the frames' resolution.")
    fy: float | None = Field(default=None, gt=0)
    cx: float | None = Field(default=None, ge=0, description="Principal point (default: the image centre).")
    cy: float | None = Field(default=None, ge=0)
    near_m: float = Field(default=0.05, gt=0, description="Nearest scene depth seen by the camera (new Gaussians).")
    far_m: float = Field(default=2.0, gt=0, description="Farthest scene depth seen by the camera.")
    cpu_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="torch threads of a session on the CPU (on a small shared machine "
        "more threads mostly wait for each other).",
    )
    cpu_max_gaussians: int = Field(
        default=4000,
        ge=100,
        le=10_000_000,
        description="On the CPU a session keeps at most this many Gaussians "
        "(or its max_gaussians if lower): the pure-torch rasterizer's cost grows with them.",
    )
    resume_frames: int = Field(
        default=256,
        ge=0,
        le=512,
        description="A session resumed after a lost worker gets back this many of the newest frames it trained "
        "on before its snapshot (its trainer's memory; 0: none, only the frames after the snapshot).",
    )
    max_image_side: int | None = Field(
        default=None, ge=16, le=8192, description="Frames are shrunk to this longest side (None: 160 CPU, 1024 CUDA)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> SplatSettings:
        if (self.fx is None) != (self.fy is None):
            raise ValueError("set both GPURELAY_SPLAT_FX and GPURELAY_SPLAT_FY, or neither")
        if self.near_m >= self.far_m:
            raise ValueError("GPURELAY_SPLAT_NEAR_M must be below GPURELAY_SPLAT_FAR_M")
        return self
