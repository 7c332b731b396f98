"""A splat's score on frames it may not have trained on: its PLY rendered at each frame's pose, PSNR against it.

A replay's comparison (:mod:`modal_workers.runtime.recording.comparison`) scores both runs' last
snapshots on the same recorded frames with :func:`ply_psnr` (the workload hands it to
``ctx.session.scorer``). Each frame is posed as the session would pose it (its pose, else forward
kinematics of its matched joints with the session's camera setup) and downscaled alike; the score is
the PSNR of the mean squared error over the frames that could be posed (``None`` when none could,
or the PLY holds no Gaussian).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from contracts.specs.session_params import SplatParams
from modal_workers.runtime.session_input import SessionFrame
from modal_workers.splat.inputs import Posed, frame_source
from modal_workers.splat.model import GaussianModel
from modal_workers.splat.ply import read_ply
from modal_workers.splat.settings import SplatSettings
from modal_workers.splat.train import SplatConfig, SplatTrainer, mse_to_psnr


def ply_psnr(
    ply: bytes, params: dict[str, Any], frames: list[SessionFrame], *, settings: SplatSettings, config: SplatConfig,
    on_cuda: bool,
) -> float | None:  # fmt: skip
    """PSNR (dB) of the Gaussians in ``ply`` at ``frames`` (posed with ``params``' camera setup)."""
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
