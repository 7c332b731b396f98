"""The ``nerf`` workload: a zip of photos → camera poses → a NeRF → a turntable of transparent frames.

Four stages of one pipeline (``deploy/routes.yaml``), each its own function on its own machine:

* :func:`check` (CPU): the archive checked and unpacked (:mod:`modal_workers.nerf.archive`); a bad
  one fails the job here, before any GPU stage is dispatched;
* :func:`colmap`: SfM with pycolmap (:mod:`modal_workers.nerf.sfm`); artifacts ``transforms.json``
  (nerfstudio's format) and ``sparse.zip`` (the COLMAP model);
* :func:`train`: an instant-NGP-style NeRF (:mod:`modal_workers.nerf.train`), checkpointed to
  storage so a retried attempt resumes; artifact ``model.pt``;
* :func:`render`: the turntable (:mod:`modal_workers.nerf.turntable`): ``frames_0001.zip``, … of RGBA
  PNGs as each fills, ``preview.mp4`` and, from the same frames, ``preview.webm``
  (:mod:`modal_workers.media.video_out`).

Every stage reads the job's ``images`` input itself (the archive is small next to what a stage
does with it) and the previous stage's artifacts with ``ctx.stage_input``. Limits and tuning are
:class:`~modal_workers.nerf.settings.NerfSettings` (``GPURELAY_NERF_*``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts.specs.jobs import NerfSpec
from modal_workers.nerf import sfm as nerf_sfm
from modal_workers.nerf.archive import Photo, unpack_photos
from modal_workers.nerf.settings import NerfSettings
from modal_workers.runtime.worker_runtime import PermanentError, WorkerContext

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


def colmap(spec: NerfSpec, ctx: WorkerContext) -> dict[str, Any]:
    """Stage 2: camera poses; ``transforms.json`` and ``sparse.zip``. A retried attempt reuses the
    earlier attempt's model when it was stored in full (``transforms.json`` is stored last)."""
    settings = load_settings()
    if ctx.attempt > 1 and (reused := _reuse_colmap(ctx)) is not None:
        return reused
    started = time.perf_counter()
    found = photos(ctx, settings)
    scales = nerf_sfm.sfm_images(found, ctx.work_dir / "sfm", spec.params.sfm_max_side)
    single = len({(p.width, p.height) for p in found}) == 1
    model = nerf_sfm.reconstruct(ctx.work_dir / "sfm", ctx.work_dir, settings, ctx.progress, single)
    registered = 0 if model is None else int(model.num_reg_images())
    if model is None or registered * 2 < len(found):
        raise PermanentError(
            "sfm_failed", f"COLMAP registered {registered} of {len(found)} photos; at least half are needed"
        )
    ctx.progress(0.95, f"{registered} of {len(found)} photos registered")
    ctx.artifact("sparse.zip", nerf_sfm.sparse_zip(model, ctx.work_dir), "application/zip")
    document = nerf_sfm.transforms(model, found, scales)
    ctx.artifact("transforms.json", json.dumps(document, indent=1).encode(), "application/json")
    seconds = round(time.perf_counter() - started, 3)
    return {"images": len(found), "registered_images": registered, "sfm_seconds": seconds}


def _reuse_colmap(ctx: WorkerContext) -> dict[str, Any] | None:
    stored = {name: ctx.load_stored(f"colmap/{name}") for name in ("transforms.json", "sparse.zip")}
    if stored["transforms.json"] is None or stored["sparse.zip"] is None:
        return None
    ctx.log("reusing the camera poses of an earlier attempt")
    ctx.artifact("sparse.zip", stored["sparse.zip"], "application/zip")
    ctx.artifact("transforms.json", stored["transforms.json"], "application/json")
    frames = len(json.loads(stored["transforms.json"])["frames"])
    return {"registered_images": frames, "sfm_reused": True}


CHECKPOINT = "train/checkpoint.pt"


def train(spec: NerfSpec, ctx: WorkerContext) -> dict[str, Any]:
    """Stage 3: the NeRF, on CUDA when present; a checkpoint every ``checkpoint_every`` iterations, which
    a retried attempt resumes from; held-out PSNR in progress and result; artifact ``model.pt``."""
    import torch

    from modal_workers.nerf.data import load_views, turntable_rig
    from modal_workers.nerf.model import FieldConfig
    from modal_workers.nerf.train import Trainer

    settings, params = load_settings(), spec.params
    on_cuda = torch.cuda.is_available()
    if not on_cuda:
        torch.set_num_threads(settings.cpu_threads)
    raw = ctx.stage_input("colmap/transforms.json").read_bytes()
    trained_on = hashlib.sha256(raw).hexdigest()
    views = load_views(json.loads(raw), photos(ctx, settings), params.downscale, params.background)
    config = FieldConfig.for_device(on_cuda)
    trainer = Trainer(views, config, torch.device("cuda" if on_cuda else "cpu"), 4096 if on_cuda else 512)
    stored = ctx.load_stored(CHECKPOINT)
    state = trainer.restore(stored, trained_on) if stored is not None else None
    resumed_from = trainer.iteration
    initial = float(state["psnr_initial"]) if state else trainer.psnr()
    ctx.log(f"resumed from iteration {resumed_from}" if state else f"training on {len(trainer.training)} views")
    psnr, started, cpu_started = initial, time.perf_counter(), time.process_time()
    while trainer.iteration < params.iterations:
        ctx.check_cancelled()
        loss = trainer.step()
        if trainer.iteration % settings.checkpoint_every == 0 and trainer.iteration < params.iterations:
            psnr = trainer.psnr()
            ctx.store(CHECKPOINT, trainer.checkpoint(trained_on, {"psnr_initial": initial}))
            ctx.log(f"checkpoint at iteration {trainer.iteration} (held-out PSNR {psnr:.2f} dB)")
        metrics = {"iteration": trainer.iteration, "loss": round(loss, 6), "psnr": round(psnr, 3)}
        ctx.progress(0.95 * trainer.iteration / params.iterations, f"iteration {trainer.iteration}", metrics)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    psnr = trainer.psnr()
    model = {"field": trainer.field.state_dict(), "config": config.as_dict(), "rig": turntable_rig(views)}
    buffer = io.BytesIO()
    torch.save(model, buffer)
    ctx.artifact("model.pt", buffer.getvalue(), "application/octet-stream")
    done = params.iterations - resumed_from
    return {
        "psnr": round(psnr, 3), "psnr_initial": round(initial, 3), "iterations": params.iterations,
        "resumed_from": resumed_from, "train_seconds": round(seconds, 3),
        "train_cpu_seconds": round(cpu_seconds, 3), "train_device": "cuda" if on_cuda else "cpu",
        "iterations_per_s": round(done / seconds, 3) if seconds > 0 else None,
    }  # fmt: skip


def render(spec: NerfSpec, ctx: WorkerContext) -> dict[str, Any]:
    """Stage 4: ``frames`` RGBA PNGs around the scene in zips of ``batch_size``, each announced as soon as
    it is full (progress per zip), ``preview.mp4`` and ``preview.webm`` (the VP8 rendition browsers play)."""
    import torch

    from modal_workers.media.video_out import WEBM_TYPE, preview_settings
    from modal_workers.nerf.data import view_rays
    from modal_workers.nerf.model import FieldConfig, NerfField
    from modal_workers.nerf.train import render_chunked
    from modal_workers.nerf.turntable import FrameZips, Preview, orbit_pose, png, straight_rgba

    params = spec.params
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = torch.load(ctx.stage_input("train/model.pt"), map_location=device, weights_only=True)
    field = NerfField(FieldConfig(**model["config"])).to(device)
    field.load_state_dict(model["field"])
    rig, width, height = model["rig"], params.render_width, params.render_height
    focal = rig["focal_over_width"] * width
    zips = -(-params.frames // params.batch_size)

    def deliver(path: Path, number: int) -> None:
        ctx.artifact(path.name, path, "application/zip")
        ctx.progress(0.97 * number / zips, f"zip {number} of {zips}", {"zips": number, "frames": batcher.count})

    batcher = FrameZips(ctx.work_dir / "frames", params.batch_size, deliver)
    bounds = preview_settings()
    webm = ctx.work_dir / "preview.webm" if bounds else None
    preview = Preview(ctx.work_dir / "preview.mp4", width, height, params.frames, webm, bounds)
    started = time.perf_counter()
    for index in range(params.frames):
        ctx.check_cancelled()
        origins, dirs = view_rays(
            orbit_pose(rig, index, params.frames), focal, focal, width / 2, height / 2, width, height
        )
        rgb, alpha = render_chunked(field, torch.as_tensor(origins, dtype=torch.float32, device=device),
                                    torch.as_tensor(dirs, dtype=torch.float32, device=device))  # fmt: skip
        rgba = straight_rgba(rgb.cpu().numpy().reshape(height, width, 3), alpha.cpu().numpy().reshape(height, width))
        batcher.add(index, png(rgba))
        preview.add(index, rgba)
    batcher.close()
    seconds = time.perf_counter() - started
    ctx.artifact("preview.mp4", preview.close(), "video/mp4")
    if preview.webm is not None:
        ctx.artifact("preview.webm", preview.webm, WEBM_TYPE)
    return {
        "frames_rendered": params.frames, "zips": zips, "render_seconds": round(seconds, 3),
        "frames_per_s": round(params.frames / seconds, 3) if seconds > 0 else None,
    }  # fmt: skip
