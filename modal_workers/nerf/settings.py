"""The nerf workload's settings (``GPURELAY_NERF_*``), read in its worker processes."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class NerfSettings(BaseSettings):
    """The nerf workload's limits and tuning (``GPURELAY_NERF_*``), read by its worker processes.

    The archive caps bound what a zip of photos may unpack to (zip bombs): actual bytes are counted
    while extracting, never trusted from the zip's directory.
    """

    model_config = SettingsConfigDict(env_prefix="GPURELAY_NERF_", extra="ignore", frozen=True)

    max_archive_bytes: int = Field(
        default=4 * 1024**3, ge=1024, description="Most bytes a photo archive may unpack to, in all."
    )
    max_archive_files: int = Field(default=1000, ge=1, le=100_000, description="Most entries in a photo archive.")
    max_image_pixels: int = Field(default=60_000_000, ge=64, description="Most pixels of one photo (its header).")
    min_images: int = Field(default=8, ge=2, le=10_000, description="Fewest photos a job needs.")
    max_images: int = Field(default=500, ge=2, le=10_000, description="Most photos a job may have.")
    exhaustive_max_images: int = Field(
        default=100, ge=2, le=10_000, description="Up to this many photos every pair is matched; above, sequentially."
    )
    sift_max_features: int = Field(default=8192, ge=256, le=65_536, description="SIFT features kept per photo.")
    sfm_mapping_trials: int = Field(
        default=3, ge=1, le=20, description="Incremental mapping runs (new seed each) while photos stay unregistered."
    )
    sfm_match_rounds: int = Field(
        default=2,
        ge=1,
        le=5,
        description="Feature matching rounds (new verification seed each) while photos stay unregistered.",
    )
    checkpoint_every: int = Field(default=1000, ge=1, description="Training iterations between checkpoints.")
    cpu_threads: int = Field(default=2, ge=1, le=256, description="torch threads when training on the CPU.")

    @model_validator(mode="after")
    def _consistent(self) -> NerfSettings:
        if self.min_images > self.max_images:
            raise ValueError("GPURELAY_NERF_MIN_IMAGES must not exceed GPURELAY_NERF_MAX_IMAGES")
        return self
