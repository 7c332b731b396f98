"""Synthetic ground truth for the splat workload's tests and benchmark.

A scene of known Gaussians (:func:`scene_gaussians`) on a table in front of the shipped synthetic
arm, a wrist camera on the arm's ``gripper_link`` aimed at the scene (:func:`synthetic_rig`), a smooth
joint trajectory (:func:`arm_angles`, SO-101 joint order, radians) and frames rendered from the
poses FK gives along it (:func:`render_frame`). Everything is deterministic for a given seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from modal_workers.splat.camera import Camera, CameraRig, Intrinsics, look_at
from modal_workers.splat.kinematics import matrix_to_rpy, synthetic_arm_urdf
from modal_workers.splat.model import Gaussians, rgb_to_sh_dc
from modal_workers.splat.raster import rasterize

CAMERA_LINK = "gripper_link"
REFERENCE_ANGLES = (0.0, 0.3, 1.2, 0.6, 0.0, 0.0)
"""The pose at which the wrist camera looks straight at :data:`TARGET`."""
TARGET = (0.42, 0.0, 0.05)
"""The scene's centre, metres in the arm's base frame."""
CAMERA_OFFSET = (0.03, 0.0, 0.02)
"""Where the camera sits on ``gripper_link`` (metres, link frame)."""
AMPLITUDES = (0.12, 0.08, 0.08, 0.06, 0.2, 0.4)
PERIODS_S = (2.0, 1.5, 2.5, 1.75, 3.0, 1.0)
SCENE_RADIUS = 0.06


def synthetic_rig() -> CameraRig:
    """The wrist camera on the synthetic arm: mounted so that at :data:`REFERENCE_ANGLES` it looks at the scene."""
    base = CameraRig.from_urdf(synthetic_arm_urdf(), CAMERA_LINK)
    link = base.camera_to_world(REFERENCE_ANGLES)  # the mount is identity here: the link's pose
    eye = link[:3, :3] @ np.asarray(CAMERA_OFFSET) + link[:3, 3]
    mount = np.linalg.inv(link) @ look_at(eye, TARGET)
    return CameraRig.from_urdf(synthetic_arm_urdf(), CAMERA_LINK, mount[:3, 3], matrix_to_rpy(mount[:3, :3]))


def arm_angles(t: float) -> np.ndarray:
    """The joint angles (SO-101 order) of the smooth test trajectory at time ``t`` seconds."""
    joints = zip(REFERENCE_ANGLES, AMPLITUDES, PERIODS_S, strict=True)
    return np.array([q0 + a * math.sin(2.0 * math.pi * t / p + i) for i, (q0, a, p) in enumerate(joints)])


def scene_gaussians(count: int = 300, seed: int = 0, radius: float = SCENE_RADIUS) -> Gaussians:
    """``count`` opaque, coloured, anisotropic Gaussians in a ball of ``radius`` around :data:`TARGET`."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(count, 3, generator=gen), dim=-1)
    means = torch.tensor(TARGET) + direction * radius * torch.rand(count, 1, generator=gen) ** (1 / 3)
    scales = radius * (0.04 + 0.12 * torch.rand(count, 3, generator=gen))
    colors = 0.1 + 0.8 * torch.rand(count, 3, generator=gen)
    return Gaussians(
        means=means,
        log_scales=scales.log(),
        quats=torch.nn.functional.normalize(torch.randn(count, 4, generator=gen), dim=-1),
        opacity_logits=torch.full((count,), 2.5),
        sh_dc=rgb_to_sh_dc(colors),
        sh_rest=torch.zeros(count, 0, 3),
    )


def camera_at(rig: CameraRig, angles: Sequence[float], intrinsics: Intrinsics) -> Camera:
    """The rig's camera at one joint-angle sample."""
    return Camera(intrinsics, rig.camera_to_world(angles))


def render_frame(scene: Gaussians, camera: Camera, background: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """The ground-truth H × W × 3 uint8 frame of ``scene`` seen by ``camera`` (pure-torch rasterizer)."""
    k = camera.intrinsics
    with torch.no_grad():
        out = rasterize(
            scene,
            torch.as_tensor(camera.viewmat, dtype=torch.float32),
            torch.as_tensor(k.matrix(), dtype=torch.float32),
            k.width,
            k.height,
            background=torch.tensor(background),
            backend="tiles",
        )
    return (out.image.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
