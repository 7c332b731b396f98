"""The nerf pipeline's stages on the synthetic scene of the tests: COLMAP, training and rendering speed.

* COLMAP: seconds for the 16 views of 640x480 (SIFT, exhaustive matching, incremental mapping; SIFT
  runs on the CPU with the PyPI pycolmap), with the camera error after a similarity alignment.
* Training: iterations/s of :class:`~modal_workers.nerf.train.Trainer` (hash grid + small MLPs) against
  a plain NeRF MLP (positional encoding, 4 × 128 ReLU, same rays, samples, loss and iterations; Adam
  at NeRF's 5e-4), and the held-out PSNR each reaches (the untrained model's in the name).
* Rendering: frames/s of :func:`~modal_workers.nerf.train.render_chunked` (every ray of a frame in
  chunks of 8192) against an unbatched per-ray loop (one ray a call: timed on :data:`LOOP_RAYS` rays of
  the frame and scaled to the frame).

On CUDA when torch sees it (the device is in each figure's name), else on the CPU with
:data:`THREADS` torch thread(s). Ours and the baseline are timed interleaved (training in
:data:`~bench.common.REPEATS` blocks, rendering frame by frame) and the medians compared.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPEATS, Result, median, rate

ITERATIONS = int(os.environ.get("BENCH_NERF_ITERATIONS", "60"))
THREADS = int(os.environ.get("BENCH_NERF_THREADS", "2"))
RENDER_SIZE = (64, 48)
FRAMES = 4
LOOP_RAYS = 256
NOTES = [
    f"nerf: the tests' synthetic scene (textured boxes on a plate, 16 views of 640x480 on a ring); COLMAP with "
    f"pycolmap's CPU SIFT; training at 1/8 resolution for {ITERATIONS} iterations against a plain NeRF MLP; "
    f"rendering {RENDER_SIZE[0]}x{RENDER_SIZE[1]} frames against an unbatched per-ray loop ({LOOP_RAYS} rays timed, "
    "scaled to a frame).",
]


def colmap(folder: Path) -> tuple[dict[str, Any], list[Any], float, float]:
    """COLMAP on the scene: transforms.json, the photos, seconds and the worst camera-centre error (% of radius)."""
    import numpy as np

    from bench.harness.nerf_scene import scene_views, scene_zip, umeyama
    from modal_workers.nerf import sfm as nerf_sfm
    from modal_workers.nerf.archive import unpack_photos
    from modal_workers.nerf.settings import NerfSettings

    views, pngs = scene_views()
    scene_zip(pngs, folder / "photos.zip")
    settings = NerfSettings()
    photos = unpack_photos(folder / "photos.zip", folder / "photos", settings)
    start = time.perf_counter()
    scales = nerf_sfm.sfm_images(photos, folder / "sfm", 1600)
    model = nerf_sfm.reconstruct(folder / "sfm", folder, settings, lambda f, m: None, True)
    seconds = time.perf_counter() - start
    document = nerf_sfm.transforms(model, photos, scales)
    centres = np.array([f["transform_matrix"] for f in document["frames"]])[:, :3, 3]
    truth = np.array([v.centre for v in views])
    scale, rotation, shift = umeyama(centres, truth)
    error = np.linalg.norm(scale * centres @ rotation.T + shift - truth, axis=1).max() / 4.2
    return document, photos, seconds, float(100 * error)


def plain_field(config: Any) -> Any:
    """The baseline field: NeRF's positional encoding (10 frequencies) and a 4 × 128 ReLU MLP."""
    import torch
    from torch import nn

    class PlainNerf(nn.Module):
        freqs: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.config = config
            self.register_buffer("freqs", 2.0 ** torch.arange(10) * torch.pi)
            self.mlp = nn.Sequential(
                nn.Linear(63, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                nn.Linear(128, 4),
            )  # fmt: skip

        def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            angles = (points[:, :, None] * self.freqs).flatten(1)
            out = self.mlp(torch.cat([points, angles.sin(), angles.cos()], -1))
            return torch.nn.functional.softplus(out[:, 0]), torch.sigmoid(out[:, 1:])

    return PlainNerf()


def training(document: dict[str, Any], photos: list[Any], device: Any) -> tuple[float, float, float, float, float]:
    """``(ours it/s, plain MLP it/s, PSNR before, ours after, plain MLP after)``: both :data:`ITERATIONS`."""
    import torch

    from modal_workers.nerf.data import load_views
    from modal_workers.nerf.model import FieldConfig
    from modal_workers.nerf.train import Trainer

    views = load_views(document, photos, 8, None)
    config = FieldConfig.for_device(device.type == "cuda")
    rays = 4096 if device.type == "cuda" else 512
    ours = Trainer(views, config, device, rays)
    plain = Trainer(views, config, device, rays)
    plain.field = plain_field(config).to(device)
    plain.optimiser = torch.optim.Adam(plain.field.parameters(), lr=5e-4)
    before = ours.psnr()
    rates: dict[str, list[float]] = {"ours": [], "plain": []}
    for _ in range(REPEATS):  # interleaved, so a busy moment of the machine hits both
        for name, trainer in (("ours", ours), ("plain", plain)):
            start = time.perf_counter()
            for _ in range(ITERATIONS // REPEATS):
                trainer.step()
            rates[name].append(rate(ITERATIONS // REPEATS, time.perf_counter() - start))
    return median(rates["ours"]), median(rates["plain"]), before, ours.psnr(), plain.psnr()


def rendering(trainer_field: Any, device: Any) -> tuple[float, float]:
    """``(batched frames/s, per-ray-loop frames/s)`` at :data:`RENDER_SIZE`."""
    import torch

    from modal_workers.nerf.data import view_rays
    from modal_workers.nerf.model import render_rays
    from modal_workers.nerf.train import render_chunked
    from modal_workers.nerf.turntable import orbit_pose

    rig = {"up": [0, 1, 0], "first": [1, 0, 0], "elevation": 0.5, "distance": 2.5, "focal_over_width": 0.9}
    width, height = RENDER_SIZE
    frames: list[tuple[torch.Tensor, torch.Tensor]] = []
    for index in range(FRAMES):
        o, d = view_rays(orbit_pose(rig, index, FRAMES), 0.9 * width, 0.9 * width, width / 2, height / 2, width, height)
        frames.append(
            (
                torch.as_tensor(o, dtype=torch.float32, device=device),
                torch.as_tensor(d, dtype=torch.float32, device=device),
            )
        )
    batched, looped = [], []
    for frame_origins, frame_dirs in frames:  # interleaved: one whole frame batched, then LOOP_RAYS of it per ray
        start = time.perf_counter()
        render_chunked(trainer_field, frame_origins, frame_dirs)
        batched.append(rate(1, time.perf_counter() - start))
        start = time.perf_counter()
        with torch.no_grad():
            for i in range(LOOP_RAYS):
                render_rays(trainer_field, frame_origins[i : i + 1], frame_dirs[i : i + 1])
        looped.append(rate(1, (time.perf_counter() - start) * (width * height) / LOOP_RAYS))
    return median(batched), median(looped)


def run() -> list[Result]:
    """The nerf figures."""
    import torch

    from modal_workers.nerf.model import FieldConfig, NerfField

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU, {THREADS} thread(s)"
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-nerf-") as tmp:
            document, photos, seconds, error = colmap(Path(tmp))
            ours, plain, before, after, plain_after = training(document, photos, device)
            field = NerfField(FieldConfig.for_device(device.type == "cuda")).to(device)
            batched, looped = rendering(field, device)
    finally:
        torch.set_num_threads(threads)
    frames = len(document["frames"])
    colmap_name = f"nerf COLMAP seconds, 16 views 640x480 ({frames} registered, worst centre error {error:.2f}%)"
    return [
        Result(colmap_name, seconds, "s"),
        Result.compare(f"nerf training iterations/s ({where}; baseline: plain NeRF MLP)", ours, "it/s", plain),
        Result.compare(
            f"nerf held-out PSNR after {ITERATIONS} iterations, untrained {before:.1f} "
            f"({where}; baseline: plain NeRF MLP)",
            after, "dB", plain_after,
        ),
        Result.compare(
            f"nerf render frames/s, {RENDER_SIZE[0]}x{RENDER_SIZE[1]} ({where}; baseline: per-ray loop)",
            batched, "frames/s", looped,
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    from bench.common import format_table

    print(format_table(run()))
