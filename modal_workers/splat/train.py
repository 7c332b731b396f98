"""Incremental Gaussian-splat training from posed frames as they arrive: :class:`SplatTrainer`.

The session glue calls :meth:`SplatTrainer.add_frame` for each posed frame (H × W × 3 uint8 RGB and a
:class:`~modal_workers.splat.camera.Camera`), :meth:`SplatTrainer.step` in a loop between frames,
:meth:`SplatTrainer.stats` for progress, :meth:`SplatTrainer.to_ply` for the live PLY and chunks,
:meth:`SplatTrainer.render` for previews and :meth:`SplatTrainer.reset` to start over.

* Initialisation: each of the first ``init_frames`` frames seeds ``init_per_frame`` Gaussians in its
  frustum (:func:`~modal_workers.splat.model.frustum_init`); until then ``step`` does nothing. Each
  later frame seeds up to ``grow_per_frame`` more where the current model misses it by more than
  ``grow_error`` (mean absolute error per pixel), so regions the camera reaches later get Gaussians.
* Frame memory (:class:`~modal_workers.splat.frames.FrameMemory`): at most ``max_frames`` frames
  are kept, a uniform sample of all frames received, plus the newest ones by ``seq``. A resumed session
  puts the frames it trained on before its snapshot back (:meth:`SplatTrainer.put_back`), uncounted.
* A step renders the newest frame (highest ``seq``) and ``views_per_step - 1`` random kept frames,
  takes the mean L1 loss, and makes one Adam step; every ``densify_every`` steps from ``densify_from`` on it densifies
  and prunes (:mod:`modal_workers.splat.densify`), never past ``max_gaussians``.
* Rendering goes through :func:`~modal_workers.splat.raster.rasterize`: gsplat on CUDA, pure torch
  elsewhere. ``device="auto"`` picks CUDA when available.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from modal_workers.runtime.worker_runtime import PermanentError
from modal_workers.splat.camera import Camera
from modal_workers.splat.densify import DensifyConfig, DensifyReport, GradStats, densify_and_prune
from modal_workers.splat.frames import FrameMemory, PosedFrame
from modal_workers.splat.model import GaussianModel, Gaussians, LearningRates, frustum_init
from modal_workers.splat.ply import to_ply_bytes
from modal_workers.splat.raster import Backend, RenderOutput, rasterize


@dataclass(frozen=True)
class SplatConfig:
    """Settings of one training session (see the module docstring)."""

    sh_degree: int = 0
    max_gaussians: int = 200_000
    init_frames: int = 3
    init_per_frame: int = 2_000
    near: float = 0.05
    far: float = 2.0
    max_frames: int = 256
    views_per_step: int = 2
    densify_from: int = 100
    densify_every: int = 100
    grow_per_frame: int = 200
    grow_error: float = 0.1
    psnr_views: int = 3
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    backend: Backend = "auto"
    device: str = "auto"
    seed: int = 0
    lrs: LearningRates = field(default_factory=LearningRates)
    densify: DensifyConfig = field(default_factory=DensifyConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.sh_degree <= 3:
            raise PermanentError("invalid_params", "sh_degree must be 0 to 3")
        if not 0 < self.near < self.far:
            raise PermanentError("invalid_params", "near must be positive and below far")
        if min(self.max_gaussians, self.init_frames, self.init_per_frame, self.max_frames, self.views_per_step) < 1:
            raise PermanentError("invalid_params", "counts must be at least 1")


@dataclass(frozen=True)
class SplatStats:
    """Progress of a session: ``psnr`` (dB) and ``loss`` are ``None`` before there is any."""

    frames_received: int
    frames_used: int
    frames_kept: int
    gaussians: int
    steps: int
    loss: float | None
    psnr: float | None


def _device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; anything else as named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class SplatTrainer:
    """Gaussians trained incrementally on the frames of one session."""

    def __init__(self, config: SplatConfig | None = None) -> None:
        self.config = config or SplatConfig()
        self.device = _device(self.config.device)
        self.background = torch.tensor(self.config.background, dtype=torch.float32, device=self.device)
        self.reset()

    def reset(self) -> None:
        """Forget every frame and Gaussian."""
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self.frames = FrameMemory(self.config.max_frames, self.config.psnr_views, random.Random(self.config.seed))
        self._seeds: list[Gaussians] = []
        self.model: GaussianModel | None = None
        self._stats = GradStats(0, self.device)
        self.frames_received = self.frames_used = self.steps = 0
        self.last_loss: float | None = None
        self.last_densify: DensifyReport | None = None

    def restore(self, gaussians: Gaussians, steps: int = 0, frames_received: int = 0, frames_used: int = 0) -> None:
        """Go on from ``gaussians`` (a lost worker's snapshot, this trainer's SH degree and budget) and its
        counts; fresh optimiser moments and no frames kept (until :meth:`put_back` gives its memory back)."""
        self.reset()
        if gaussians.count:
            self.model = GaussianModel(gaussians.map(lambda t: t.to(self.device)), self.config.lrs, self._extent())
            self._stats = GradStats(self.model.count, self.device)
        self.steps, self.frames_received, self.frames_used = steps, frames_received, frames_used

    def _extent(self) -> float:
        return 0.5 * (self.config.far - self.config.near)

    def add_frame(self, image: np.ndarray, camera: Camera, seq: int | None = None) -> int:
        """Take one posed RGB frame (H × W × 3 uint8 matching the camera's size); its arrival index.

        ``seq`` orders frames by capture (default: arrival): a worker that is behind may add the
        newest frame first, and steps still favour the frame with the highest ``seq``.
        """
        index = self.frames_received
        frame = self._posed(image, camera, index, index if seq is None else seq)
        self.frames_received += 1
        self.frames.add(frame)
        if self.model is None:
            self._seed(frame, image)
        else:
            self._grow(self.model, frame, image)
        return index

    def put_back(self, frames: list[tuple[np.ndarray, Camera, int]]) -> None:
        """Take back ``(image, camera, seq)`` frames this session trained on before the snapshot it resumed from
        (its memory): kept as used, not counted as received, growing nothing (the restored Gaussians cover
        them); they seed a model the snapshot had not initialised yet, as they did."""
        posed = [self._posed(image, camera, -1, seq) for image, camera, seq in frames]
        self.frames.put_back(posed, self.frames_received)
        for frame, (image, _, _) in zip(posed, frames, strict=True):
            if self.model is None:
                self._seed(frame, image)

    def _posed(self, image: np.ndarray, camera: Camera, index: int, seq: int) -> PosedFrame:
        k = camera.intrinsics
        if image.dtype != np.uint8 or image.shape != (k.height, k.width, 3):
            expected = f"a {k.height}x{k.width}x3 uint8 image"
            raise PermanentError("invalid_frame", f"expected {expected}, got {image.shape} {image.dtype}")
        pixels = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
        return PosedFrame.make(index, seq, pixels, camera, self.device)

    def _seed(self, frame: PosedFrame, image: np.ndarray) -> None:
        c = self.config
        self._seeds.append(
            frustum_init(frame.camera, image, c.init_per_frame, c.near, c.far, c.sh_degree, self._generator)
        )
        if len(self._seeds) < c.init_frames:
            return
        initial = self._seeds[0]
        for more in self._seeds[1:]:
            initial = initial.cat(more)
        if initial.count > c.max_gaussians:
            initial = initial.map(lambda t: t[: c.max_gaussians])
        initial = initial.map(lambda t: t.to(self.device))
        self.model = GaussianModel(initial, c.lrs, extent=self._extent())
        self._stats = GradStats(self.model.count, self.device)
        self._seeds = []

    def _grow(self, model: GaussianModel, frame: PosedFrame, image: np.ndarray) -> None:
        """Seed up to ``grow_per_frame`` Gaussians where the model misses this frame by ``grow_error``."""
        c = self.config
        room = min(c.grow_per_frame, c.max_gaussians - model.count)
        if room <= 0:
            return
        with torch.no_grad():
            error = (self._render(model.gaussians, frame).image - frame.image.float() / 255.0).abs().mean(-1)
        missed = (error.flatten() > c.grow_error).nonzero().squeeze(1).cpu()
        if len(missed):
            count = min(room, len(missed))
            new = frustum_init(frame.camera, image, count, c.near, c.far, c.sh_degree, self._generator, missed)
            model.append(new.map(lambda t: t.to(self.device)))
            self._stats.extend(model.count)

    def _render(self, g: Gaussians, frame: PosedFrame) -> RenderOutput:
        k = frame.camera.intrinsics
        return rasterize(
            g,
            frame.viewmat,
            frame.K,
            k.width,
            k.height,
            sh_degree=self.config.sh_degree,
            background=self.background,
            backend=self.config.backend,
        )

    def step(self, n: int = 1) -> float | None:
        """Up to ``n`` training steps (none before initialisation); the last step's loss."""
        for _ in range(n):
            if self.model is None:
                break
            self._step(self.model)
        return self.last_loss

    def _step(self, model: GaussianModel) -> None:
        views = self.frames.views(self.config.views_per_step)
        renders, total = [], torch.zeros((), device=self.device)
        for frame in views:
            out = self._render(model.gaussians, frame)
            total = total + (out.image - frame.image.float() / 255.0).abs().mean()
            renders.append(out)
        loss = total / len(views)
        torch.autograd.backward(loss)
        for frame, out in zip(views, renders, strict=True):
            k = frame.camera.intrinsics
            self._stats.add(out.means2d, out.visible, k.width, k.height, len(views))
            if not frame.used:
                frame.used, self.frames_used = True, self.frames_used + 1
        model.step()
        self.steps += 1
        self.last_loss = float(loss.detach())
        c = self.config
        if self.steps >= c.densify_from and self.steps % c.densify_every == 0:
            self.last_densify = densify_and_prune(model, self._stats, c.densify, c.max_gaussians, self._generator)

    def render(self, camera: Camera) -> np.ndarray:
        """The current model seen from ``camera``: H × W × 3 float32 in [0, 1] (background if untrained)."""
        k = camera.intrinsics
        if self.model is None:
            return np.broadcast_to(self.background.cpu().numpy(), (k.height, k.width, 3)).astype(np.float32)
        with torch.no_grad():
            view = PosedFrame.make(-1, -1, torch.empty(0), camera, self.device)
            image = self._render(self.model.gaussians, view).image
        return image.clamp(0.0, 1.0).cpu().numpy()

    def psnr(self) -> float | None:
        """PSNR (dB) of the current model on the newest ``psnr_views`` frames (of their mean squared error)."""
        if self.model is None or not self.frames.latest:
            return None
        errors = []
        for frame in self.frames.latest:
            truth = frame.image.float().cpu().numpy() / 255.0
            errors.append(float(np.mean((self.render(frame.camera) - truth) ** 2)))
        return mse_to_psnr(float(np.mean(errors)))

    def stats(self, psnr: bool = True) -> SplatStats:
        """Where training stands (``psnr``: render the newest views for the PSNR estimate, else ``None``)."""
        return SplatStats(
            self.frames_received,
            self.frames_used,
            len(self.frames.kept),
            self.model.count if self.model else 0,
            self.steps,
            self.last_loss,
            self.psnr() if psnr else None,
        )

    def gaussians(self) -> Gaussians:
        """The current Gaussians (detached, on the CPU; none before initialisation)."""
        if self.model is None:
            return Gaussians.empty(self.config.sh_degree)
        return self.model.gaussians.map(lambda t: t.detach().cpu())

    def to_ply(self) -> bytes:
        """The current Gaussians as a 3DGS PLY file."""
        return to_ply_bytes(self.gaussians())


def psnr(image: np.ndarray, truth: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1] (capped at 100 for identical images)."""
    return mse_to_psnr(float(np.mean((np.asarray(image, np.float64) - np.asarray(truth, np.float64)) ** 2)))


def mse_to_psnr(mse: float) -> float:
    """PSNR in dB of a mean squared error of values in [0, 1] (100 for no error)."""
    return 100.0 if mse <= 1e-10 else -10.0 * math.log10(mse)
