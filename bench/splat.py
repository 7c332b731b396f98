"""Gaussian-splat training speed on the CPU: the tiled pure-torch rasterizer against the dense one.

Both sides run whole :class:`~modal_workers.splat.train.SplatTrainer` steps (render the newest frame
and one earlier frame, L1 loss, backward, Adam) on the same synthetic frames: the shipped arm's wrist
camera over a scene of known Gaussians, :data:`SIZE` × :data:`SIZE` pixels, exactly :data:`GAUSSIANS`
Gaussians (seeded in the first frames' frustums; densification off so the count stays put). Only
the rasterizer backend differs:

* ``tiles`` (the workload's CPU path): per 8 × 8 tile only the Gaussians whose box meets it, tiles
  grouped by load, σ of a tile group as one batched matrix product;
* ``dense`` (the baseline): every pixel against every visible Gaussian, still depth-sorted once.

Steps/s are the median of :data:`REPEATS` runs of :data:`STEPS` steps, after :data:`WARMUP` steps,
with :data:`THREADS` torch thread(s) (on a small shared machine more threads mostly wait).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, median, rate

if TYPE_CHECKING:
    from modal_workers.splat.raster import Backend
    from modal_workers.splat.train import SplatTrainer

SIZE = int(os.environ.get("BENCH_SPLAT_SIZE", "64"))
GAUSSIANS = int(os.environ.get("BENCH_SPLAT_GAUSSIANS", "2000"))
STEPS = int(os.environ.get("BENCH_SPLAT_STEPS", "20"))
WARMUP = 5
REPEATS = 3
FRAMES = 8
THREADS = int(os.environ.get("BENCH_SPLAT_THREADS", "1"))
RATIO = 4.0
NOTES = [
    f"splat: SplatTrainer steps (2 views, L1, backward, Adam) at {SIZE}x{SIZE} with {GAUSSIANS} Gaussians on the "
    f"CPU, {THREADS} torch thread(s); the tiled pure-torch rasterizer against the dense one (every pixel × every "
    f"visible Gaussian) in the same run; target ratio ≥ {RATIO}.",
]


def trainer(backend: Backend) -> SplatTrainer:
    """A trainer fed :data:`FRAMES` synthetic frames, holding exactly :data:`GAUSSIANS` Gaussians."""
    from modal_workers.splat.camera import Camera, Intrinsics
    from modal_workers.splat.synth import arm_angles, render_frame, scene_gaussians, synthetic_rig
    from modal_workers.splat.train import SplatConfig, SplatTrainer

    scene, rig, k = scene_gaussians(), synthetic_rig(), Intrinsics.from_fov(SIZE, SIZE, 60.0)
    init_frames = 4
    config = SplatConfig(
        near=0.1, far=0.4, init_frames=init_frames, init_per_frame=GAUSSIANS // init_frames,
        max_gaussians=GAUSSIANS, grow_per_frame=0, densify_from=10**9, backend=backend, device="cpu",
    )  # fmt: skip
    run = SplatTrainer(config)
    for i in range(FRAMES):
        cam = Camera(k, rig.camera_to_world(arm_angles(0.1 * i)))
        run.add_frame(render_frame(scene, cam), cam)
    return run


def steps_per_s(run: SplatTrainer, steps: int) -> float:
    """Training steps/s of ``run`` over ``steps`` steps."""
    start = time.perf_counter()
    run.step(steps)
    return rate(steps, time.perf_counter() - start)


def run() -> list[Result]:
    """The splat training figure (CPU)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        tiles, dense = trainer("tiles"), trainer("dense")
        steps_per_s(tiles, WARMUP)
        steps_per_s(dense, WARMUP)
        ours, base = [], []
        for _ in range(REPEATS):
            ours.append(steps_per_s(tiles, STEPS))
            base.append(steps_per_s(dense, STEPS))
    finally:
        torch.set_num_threads(before)
    baseline = median(base)
    name = f"splat training steps/s (CPU, {SIZE}x{SIZE}, {GAUSSIANS} Gaussians, tiled vs dense)"
    return [Result.compare(name, median(ours), "steps/s", baseline, RATIO * baseline)]


if __name__ == "__main__":
    from bench.common import format_table

    print(format_table(run()))
