"""SplatTrainer: frames in, Gaussians trained incrementally, stats, renders and PLY snapshots out.

The slow tests train on synthetic ground truth: a known scene rendered from the wrist camera of the
shipped arm along a smooth joint trajectory, posed by forward kinematics of the joint samples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from modal_workers.runtime.worker_runtime import PermanentError
from modal_workers.splat.camera import Camera, Intrinsics
from modal_workers.splat.densify import DensifyConfig
from modal_workers.splat.model import SH_C0
from modal_workers.splat.ply import read_ply
from modal_workers.splat.synth import arm_angles, render_frame, scene_gaussians, synthetic_rig
from modal_workers.splat.train import SplatConfig, SplatTrainer, psnr

INTRINSICS = Intrinsics.from_fov(64, 64, 60.0)
FRAME_DT_S = 0.1
STEPS_PER_FRAME = 4
"""Training steps after each frame (the live worker trains between frames the same way)."""
SCENE_CONFIG = {"near": 0.1, "far": 0.4, "init_per_frame": 500, "max_gaussians": 3000}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a small shared CPU, more threads mostly wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def view(t: float) -> Camera:
    return Camera(INTRINSICS, synthetic_rig().camera_to_world(arm_angles(t)))


def frames(count: int, size: int = 64) -> list[tuple[np.ndarray, Camera]]:
    scene, rig = scene_gaussians(), synthetic_rig()
    k = Intrinsics.from_fov(size, size, 60.0)
    cams = [Camera(k, rig.camera_to_world(arm_angles(i * FRAME_DT_S))) for i in range(count)]
    return [(render_frame(scene, cam), cam) for cam in cams]


def test_frames_are_checked_and_nothing_trains_before_initialisation() -> None:
    trainer = SplatTrainer(SplatConfig(init_frames=2, init_per_frame=50, near=0.1, far=0.4))
    (image, cam), (image2, cam2) = frames(2, size=24)
    for bad in (image[..., 0], image.astype(np.float32), image[:, :20]):
        with pytest.raises(PermanentError) as caught:
            trainer.add_frame(bad, cam)
        assert caught.value.code == "invalid_frame"
    assert trainer.add_frame(image, cam) == 0
    assert trainer.step(5) is None
    stats = trainer.stats()
    assert (stats.frames_received, stats.gaussians, stats.steps, stats.loss, stats.psnr) == (1, 0, 0, None, None)
    assert np.array_equal(trainer.render(cam), np.zeros((24, 24, 3), np.float32))
    assert read_ply(trainer.to_ply()).count == 0
    assert trainer.add_frame(image2, cam2) == 1
    assert trainer.stats().gaussians == 100
    assert trainer.step(2) is not None
    stats = trainer.stats()
    assert (stats.steps, stats.frames_used) == (2, 2)
    assert stats.loss is not None
    assert stats.psnr is not None
    assert stats.psnr > 5


def test_frame_memory_is_bounded_and_keeps_early_frames() -> None:
    trainer = SplatTrainer(SplatConfig(max_frames=6, init_frames=1, init_per_frame=20, near=0.1, far=0.4))
    image, cam = frames(1, size=16)[0]
    for _ in range(60):
        trainer.add_frame(image, cam)
    kept = sorted(f.index for f in trainer.frames.kept)
    assert len(kept) == 6
    assert trainer.stats().frames_kept == 6
    assert kept[0] < 30  # a uniform sample of the session, not just its tail
    trainer.step(1)
    assert trainer.frames.newest.used  # every step trains on the newest frame
    trainer.reset()
    assert trainer.stats() == trainer.stats().__class__(0, 0, 0, 0, 0, None, None)


def test_steps_favour_the_newest_frame_by_seq_whatever_the_arrival_order() -> None:
    trainer = SplatTrainer(SplatConfig(init_frames=1, init_per_frame=20, psnr_views=2, near=0.1, far=0.4))
    image, cam = frames(1, size=16)[0]
    for seq in (5, 9, 3, 7):
        trainer.add_frame(image, cam, seq=seq)
    assert [f.seq for f in trainer.frames.latest] == [7, 9]
    trainer.step(1)
    used = {f.seq for f in trainer.frames.kept if f.used}
    assert 9 in used
    assert len(used) == 2


@pytest.mark.parametrize("grow", [0, 40])
def test_new_frames_seed_gaussians_where_the_model_misses(grow: int) -> None:
    trainer = SplatTrainer(SplatConfig(init_frames=1, init_per_frame=100, grow_per_frame=grow, near=0.1, far=0.4))
    cam = frames(1, size=32)[0][1]
    dark = np.zeros((32, 32, 3), np.uint8)
    trainer.add_frame(dark, cam)  # a dark view: the initial Gaussians are dark and explain it
    trainer.add_frame(dark, cam)
    assert trainer.stats().gaussians == 100
    changed = dark.copy()
    changed[24:30, 20:28] = 255  # something white comes into view
    trainer.add_frame(changed, cam)
    g = trainer.gaussians()
    assert g.count == 100 + grow
    if not grow:
        return
    local = (g.means[100:].double() - torch.as_tensor(cam.position)) @ torch.as_tensor(cam.cam_to_world[:3, :3])
    k = cam.intrinsics
    u, v = k.fx * local[:, 0] / local[:, 2] + k.cx, k.fy * local[:, 1] / local[:, 2] + k.cy
    assert bool(((u >= 20) & (u <= 28) & (v >= 24) & (v <= 30)).all())
    torch.testing.assert_close(g.sh_dc[100:] * SH_C0 + 0.5, torch.ones(grow, 3))


def test_a_session_whose_gaussians_are_all_pruned_keeps_going() -> None:
    prune_all = DensifyConfig(prune_opacity=1.0)
    config = SplatConfig(init_frames=1, init_per_frame=30, near=0.1, far=0.4, grow_per_frame=0, densify_from=2,
                         densify_every=2, densify=prune_all)  # fmt: skip
    trainer = SplatTrainer(config)
    cam = frames(1, size=16)[0][1]
    trainer.add_frame(np.zeros((16, 16, 3), np.uint8), cam)
    trainer.step(4)
    assert trainer.stats().gaussians == 0
    assert trainer.last_loss == 0.0  # nothing left, over a black background: black
    trainer.add_frame(np.full((16, 16, 3), 200, np.uint8), cam)
    trainer.step(2)
    stats = trainer.stats()
    assert (stats.steps, stats.gaussians) == (6, 0)
    # The PSNR of the two newest views' pooled error (not the mean of a perfect and a poor PSNR).
    assert stats.psnr == pytest.approx(-10 * math.log10(np.mean([0.0, (200 / 255) ** 2])), abs=1e-4)
    assert read_ply(trainer.to_ply()).count == 0


def test_config_is_validated() -> None:
    for bad in ({"sh_degree": 4}, {"near": 0.5, "far": 0.4}, {"max_frames": 0}, {"views_per_step": 0}):
        with pytest.raises(PermanentError) as caught:
            SplatConfig(**bad)  # type: ignore[arg-type]
        assert caught.value.code == "invalid_params"


def test_training_improves_renders_densifies_and_exports() -> None:
    settings = {**SCENE_CONFIG, "init_per_frame": 300, "densify_from": 20, "densify_every": 20, "sh_degree": 1}
    config = SplatConfig(**settings)  # type: ignore[arg-type]
    trainer = SplatTrainer(config)
    shots = frames(4, size=32)
    for image, cam in shots:
        trainer.add_frame(image, cam)
    before = trainer.stats().psnr
    losses = [trainer.step(1) for _ in range(40)]
    after = trainer.stats()
    assert before is not None
    assert after.psnr is not None
    assert after.psnr > before + 3
    assert losses[-1] is not None
    assert losses[0] is not None
    assert losses[-1] < losses[0]
    assert trainer.last_densify is not None
    assert after.gaussians == trainer.last_densify.count
    back = read_ply(trainer.to_ply())
    assert back.count == after.gaussians
    assert back.sh_degree == 1
    torch.testing.assert_close(back.means, trainer.gaussians().means)
    render = trainer.render(shots[-1][1])
    assert render.shape == (32, 32, 3)
    assert render.dtype == np.float32
    assert psnr(render, shots[-1][0] / 255.0) == pytest.approx(trainer.psnr(), abs=3.0)


def train_on_the_arm_trajectory(joint_delay_s: float) -> tuple[float, float, float, int]:
    """Train on 24 frames (10 fps) posed by FK of joint samples taken ``joint_delay_s`` off the frame time.

    Returns the held-out PSNR at initialisation and after training, the training time and the step count.
    :data:`STEPS_PER_FRAME` steps follow each frame: 4 reach 35-37 dB here (12 reached 43 dB at three times
    the CPU, which a loaded CI machine could not spare); the time is printed, not asserted (bench/splat.py
    holds the speed figures).
    """
    scene, rig = scene_gaussians(), synthetic_rig()
    held_out = [Camera(INTRINSICS, rig.camera_to_world(arm_angles(t))) for t in np.arange(0.05, 2.4, 0.4)]
    truths = [render_frame(scene, cam) / 255.0 for cam in held_out]
    trainer = SplatTrainer(SplatConfig(**SCENE_CONFIG))  # type: ignore[arg-type]

    def held_out_psnr() -> float:
        return float(np.mean([psnr(trainer.render(cam), truth) for cam, truth in zip(held_out, truths, strict=True)]))

    initial, elapsed = 0.0, 0.0
    for i in range(24):
        t = i * FRAME_DT_S
        image = render_frame(scene, Camera(INTRINSICS, rig.camera_to_world(arm_angles(t))))
        started = time.perf_counter()
        trainer.add_frame(image, Camera(INTRINSICS, rig.camera_to_world(arm_angles(t + joint_delay_s))))
        if i == trainer.config.init_frames - 1:
            initial = held_out_psnr()
        trainer.step(STEPS_PER_FRAME)
        elapsed += time.perf_counter() - started
    print(
        f"joint delay {joint_delay_s * 1000:+.0f} ms: held-out PSNR {initial:.1f} → {held_out_psnr():.1f} dB, "
        f"{trainer.steps} steps in {elapsed:.1f} s, {trainer.stats().gaussians} Gaussians"
    )
    return initial, held_out_psnr(), elapsed, trainer.steps


@pytest.mark.slow
@pytest.mark.timeout(360)  # ~10 s of CPU training alone; a loaded 2-core machine took 100-280 s
def test_fk_posed_frames_reach_25_db_on_held_out_views() -> None:
    initial, final, _elapsed, steps = train_on_the_arm_trajectory(0.0)
    assert initial < 20.0  # the bar is not met by initialisation alone
    assert final >= 25.0
    assert steps == 22 * STEPS_PER_FRAME  # training starts at the third frame


@pytest.mark.slow
@pytest.mark.timeout(360)
@pytest.mark.parametrize("joint_delay_s", [-0.010, 0.010])
def test_joint_samples_10_ms_off_still_converge(joint_delay_s: float) -> None:
    path = np.array([arm_angles(t)[:5] for t in np.arange(0, 3, 0.001)])  # the joints that move the camera
    peak_speed = float(np.abs(np.diff(path, axis=0)).max()) / 0.001
    assert peak_speed > 0.3  # rad/s: 10 ms off is a real pose error (≈ 0.2° on a joint at peak speed)
    _initial, final, _elapsed, _steps = train_on_the_arm_trajectory(joint_delay_s)
    assert final >= 25.0
