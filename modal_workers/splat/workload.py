"""The ``splat`` workload: live Gaussian splatting from a session's frames and the robot's joint angles.

``run(spec, ctx)`` serves one session (``ctx.session``, :mod:`modal_workers.runtime.live_session`) until it
stops: each poll's frames are posed (:mod:`modal_workers.splat.inputs`: explicit pose, else forward
kinematics of the matched joint sample, else counted in ``frames_without_pose``) and trained on
incrementally (:class:`~modal_workers.splat.train.SplatTrainer`); between polls the session owes
``steps_per_frame`` steps per used frame, run in slices of :data:`TRAIN_SLICE_S` so control and new
frames are never kept waiting long. Outputs, chunks, counters and the result are
:class:`~modal_workers.splat.session.SplatSession`'s. The session is ready once the trainer is built;
a worker lost mid-session is resumed from the newest live PLY
(:meth:`~modal_workers.splat.session.SplatSession.restore`) and the newest ``resume_frames`` frames it had
trained on (its memory, handed back as restored frames). A replay's comparison
(:mod:`modal_workers.runtime.recording.comparison`) scores both runs' last snapshots on the same recorded
frames with :func:`ply_psnr`, handed to it as ``ctx.session.scorer``.

Deployment defaults (URDF, camera link and mount, intrinsics, scene depth, image size) are
:class:`~modal_workers.splat.settings.SplatSettings` (``GPURELAY_SPLAT_*``). On CUDA the rasterizer is
gsplat when its kernels were built into the image (:func:`gsplat_prebuilt`), never compiled at
request time; elsewhere it is the pure-torch one. ``warm()`` (Modal's ``@modal.enter``) imports torch
and touches the GPU once per container.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from contracts.specs.jobs import SplatSpec
from contracts.specs.session_params import SplatParams
from modal_workers.runtime.live_session import LiveSession
from modal_workers.runtime.session_frames import SessionFrame
from modal_workers.runtime.session_resume import resumable
from modal_workers.runtime.worker_runtime import PermanentError
from modal_workers.splat.inputs import Posed, frame_source
from modal_workers.splat.model import GaussianModel
from modal_workers.splat.ply import read_ply
from modal_workers.splat.raster import Backend
from modal_workers.splat.session import SplatSession
from modal_workers.splat.settings import SplatSettings
from modal_workers.splat.train import SplatConfig, SplatTrainer, mse_to_psnr

log = logging.getLogger(__name__)

TRAIN_SLICE_S = 0.2
"""Longest stretch of training between two polls."""
IDLE_POLL_S = 0.5
"""How long a poll waits for frames when no step is owed."""
INIT_FRAMES = 3
MAX_INIT_PER_FRAME = 2000


def gsplat_prebuilt() -> bool:
    """Whether gsplat's CUDA kernels were built ahead (``gsplat/csrc*.so``); looked up without importing gsplat,
    whose import would otherwise compile them on a machine with a CUDA compiler."""
    spec = importlib.util.find_spec("gsplat")
    if spec is None or spec.origin is None:
        return False
    return any(Path(spec.origin).parent.glob("csrc*.so"))


def backend(on_cuda: bool) -> Backend:
    """gsplat on CUDA with prebuilt kernels, else the pure-torch tiled rasterizer."""
    return "gsplat" if on_cuda and gsplat_prebuilt() else "tiles"


def trainer_config(params: SplatParams, settings: SplatSettings, on_cuda: bool) -> SplatConfig:
    """The trainer's settings for one session: SH degree 0 on the CPU and 3 on CUDA unless the params say;
    on the CPU at most ``cpu_max_gaussians``; half the budget seeded by the first frames."""
    sh_degree = params.sh_degree if params.sh_degree is not None else (3 if on_cuda else 0)
    budget = params.max_gaussians if on_cuda else min(params.max_gaussians, settings.cpu_max_gaussians)
    per_frame = max(1, min(MAX_INIT_PER_FRAME, budget // (2 * INIT_FRAMES)))
    return SplatConfig(
        sh_degree=sh_degree, max_gaussians=budget, init_frames=INIT_FRAMES, init_per_frame=per_frame,
        near=settings.near_m, far=settings.far_m, backend=backend(on_cuda), device="cuda" if on_cuda else "cpu",
    )  # fmt: skip


def load_settings() -> SplatSettings:
    """The deployment's splat settings; a bad value fails the session with ``invalid_settings``."""
    try:
        return SplatSettings()
    except ValidationError as exc:
        raise PermanentError("invalid_settings", f"GPURELAY_SPLAT_* settings are not valid: {exc}") from None


def warm() -> None:
    """Once per container: import torch and, on a GPU, create its CUDA context."""
    import torch

    if torch.cuda.is_available():
        torch.zeros(1, device="cuda")
        log.info("splat: CUDA ready, rasterizer %s", backend(True))


@resumable
def run(spec: SplatSpec, ctx: Any) -> dict[str, Any]:
    """Train on the session's frames until it stops; the result of :meth:`SplatSession.finish`."""
    import torch

    on_cuda = torch.cuda.is_available()
    settings = load_settings()
    threads = torch.get_num_threads()
    if not on_cuda:
        torch.set_num_threads(settings.cpu_threads)
    try:
        return serve(spec.params, ctx, settings, on_cuda)
    finally:
        torch.set_num_threads(threads)


def serve(params: SplatParams, ctx: Any, settings: SplatSettings, on_cuda: bool) -> dict[str, Any]:
    """The session's loop: poll, take frames, train a slice, publish what is due; until stop."""
    live: LiveSession = ctx.session
    source = frame_source(params, settings, on_cuda)
    trainer = SplatTrainer(trainer_config(params, settings, on_cuda))
    live.scorer = partial(ply_psnr, settings=settings, config=trainer.config, on_cuda=on_cuda)
    session = SplatSession(ctx, trainer, source, params, memory=settings.resume_frames)
    if live.resume_point is not None:
        session.restore(live.resume_point, live.resume_snapshot)
    rig = "no URDF: frames need a pose" if source.rig is None else f"camera on {source.rig.chain.tip}"
    live.ready()
    session.status(0.0)
    ctx.log(f"splat session ready: {trainer.device}, {trainer.config.backend} rasterizer, {rig}")
    while True:
        batch = live.poll(0.0 if session.wants_steps else IDLE_POLL_S)
        if batch.stop:
            return session.finish(batch.stop)
        if batch.reset:
            session.reset()
        session.take(batch.frames)
        session.train(TRAIN_SLICE_S)
        session.tick()


def ply_psnr(
    ply: bytes, params: dict[str, Any], frames: list[SessionFrame], *, settings: SplatSettings, config: SplatConfig,
    on_cuda: bool,
) -> float | None:  # fmt: skip
    """PSNR (dB) of the Gaussians in ``ply`` at ``frames``, each posed as the session would pose it (its
    pose, else forward kinematics of its matched joints with ``params``' camera setup) and downscaled
    alike; ``None`` when no frame could be posed or the PLY holds no Gaussian."""
    gaussians = read_ply(ply)
    if gaussians.count == 0:
        return None
    source = frame_source(SplatParams.model_validate(params), settings, on_cuda)
    trainer = SplatTrainer(config)
    trainer.model = GaussianModel(gaussians.map(lambda t: t.to(trainer.device)), config.lrs)
    errors = []
    for frame in frames:
        posed = source.prepare(frame)
        if isinstance(posed, Posed):
            truth = posed.image.astype(np.float32) / 255.0
            errors.append(float(np.mean((trainer.render(posed.camera) - truth) ** 2)))
    return mse_to_psnr(float(np.mean(errors))) if errors else None
