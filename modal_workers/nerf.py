"""The ``nerf`` workload: a zip of photos → camera poses → a NeRF → a turntable of transparent frames.

Four stages of one pipeline (``deploy/routes.yaml``), each its own function on its own machine:

* :func:`check` (CPU): the archive checked and unpacked (:mod:`modal_workers.nerf_archive`); a bad
  one fails the job here, before any GPU stage is dispatched;
* :func:`colmap`: SfM with pycolmap (:mod:`modal_workers.nerf_sfm`); artifacts ``transforms.json``
  (nerfstudio's format) and ``sparse.zip`` (the COLMAP model);
* :func:`train`: an instant-NGP-style NeRF (:mod:`modal_workers.nerf_train`), checkpointed to
  storage so a retried attempt resumes; artifact ``model.pt``;
* :func:`render`: the turntable (:mod:`modal_workers.nerf_turntable`): ``frames_0001.zip``, … of RGBA
  PNGs as each fills, and ``preview.mp4``.

Every stage reads the job's ``images`` input itself (the archive is small next to what a stage
does with it) and the previous stage's artifacts with ``ctx.stage_input``. Limits and tuning are
:class:`~services.common.config.NerfSettings` (``GPURELAY_NERF_*``).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from contracts.job_specs import NerfSpec
from modal_workers.nerf_archive import Photo, unpack_photos
from modal_workers.runtime import PermanentError, WorkerContext
from services.common.config import NerfSettings

log = logging.getLogger(__name__)


def load_settings() -> NerfSettings:
    """The deployment's nerf settings; a bad value fails the job with ``invalid_settings``."""
    try:
        return NerfSettings()
    except ValidationError as exc:
        raise PermanentError("invalid_settings", f"GPURELAY_NERF_* settings are not valid: {exc}") from None


def photos(ctx: WorkerContext, settings: NerfSettings, *, decode: bool = False) -> list[Photo]:
    """The job's photos, unpacked into the run's folder (checked again: the check stage decoded them)."""
    return unpack_photos(ctx.input_path("images"), ctx.work_dir / "photos", settings, decode=decode)


def check(spec: NerfSpec, ctx: WorkerContext) -> dict[str, Any]:
    """Stage 1 (CPU): the archive is safe, every file a photo that decodes, and there are enough."""
    ctx.progress(0.0, "checking the photo archive")
    found = photos(ctx, load_settings(), decode=True)
    ctx.progress(1.0, f"{len(found)} photos")
    return {"images": len(found)}
