"""Cameras of the splat workload: intrinsics, poses, the arm-mounted rig and per-frame pose resolution.

Conventions: a camera pose is the 4 × 4 **camera→world** transform; the camera frame is OpenCV's
(x right, y down, z forward, as gsplat's ``viewmats`` expect once inverted); the world frame is the
URDF's base frame. numpy only (no torch).

API:

* :class:`Intrinsics` (``fx, fy, cx, cy`` in pixels, ``width``, ``height``); :meth:`Intrinsics.from_fov`
  builds them from a horizontal field of view (square pixels, centred principal point).
* :class:`Camera` (intrinsics + ``cam_to_world``): :attr:`Camera.viewmat` (world→camera),
  :attr:`Camera.position`; :func:`look_at` builds a camera→world pose from an eye and a target.
* :class:`CameraRig`: a URDF chain to the link the camera is on plus the camera→link mount
  (``xyz`` + ``rpy``); :meth:`CameraRig.camera_to_world` maps one joint-angle sample (in
  ``joint_names`` order, SO-101's by default) to the camera pose by forward kinematics.
* :func:`resolve_pose` (explicit pose, joint sample, rig): the explicit 4 × 4 pose sent with a frame
  wins, else the joint sample through the rig, else ``None`` (the caller counts
  ``frames_without_pose``). Malformed input raises :class:`~modal_workers.runtime.worker_runtime.PermanentError`
  (``invalid_pose``, ``invalid_joints``, ``invalid_camera``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modal_workers.runtime.worker_runtime import PermanentError
from modal_workers.splat.kinematics import SO101_JOINTS, KinematicChain, parse_urdf, transform

ORTHONORMAL_TOL = 1e-4
"""How far an explicit pose's rotation may be from orthonormal (float32 senders round)."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for a ``width`` × ``height`` image (pixel centres at +0.5)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values) or self.fx <= 0 or self.fy <= 0:
            raise PermanentError("invalid_camera", "fx and fy must be positive and cx, cy finite")
        if not (1 <= self.width <= 16384 and 1 <= self.height <= 16384):
            raise PermanentError("invalid_camera", f"image size {self.width}x{self.height} is out of range")

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> Intrinsics:
        """Square pixels, principal point at the image centre, horizontal field of view ``hfov_deg``."""
        if not 0.0 < hfov_deg < 180.0:
            raise PermanentError("invalid_camera", f"horizontal field of view {hfov_deg} is not in (0, 180)")
        focal = 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(focal, focal, width / 2.0, height / 2.0, width, height)

    def matrix(self) -> np.ndarray:
        """The 3 × 3 ``K``."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def rigid_inverse(pose: np.ndarray) -> np.ndarray:
    """The inverse of a 4 × 4 rigid transform."""
    out = np.eye(4)
    out[:3, :3] = pose[:3, :3].T
    out[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    return out


@dataclass(frozen=True)
class Camera:
    """A posed camera: ``cam_to_world`` is 4 × 4 (OpenCV camera axes)."""

    intrinsics: Intrinsics
    cam_to_world: np.ndarray

    @property
    def viewmat(self) -> np.ndarray:
        """World→camera, 4 × 4."""
        return rigid_inverse(self.cam_to_world)

    @property
    def position(self) -> np.ndarray:
        """The camera centre in world coordinates."""
        return np.asarray(self.cam_to_world[:3, 3])


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """The camera→world pose of a camera at ``eye`` looking at ``target`` (image up ≈ world ``up``)."""
    eye_v, forward = np.asarray(eye, float), np.asarray(target, float) - np.asarray(eye, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, float))
    if np.linalg.norm(right) < 1e-9:
        raise PermanentError("invalid_camera", "the view direction is parallel to up")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], axis=1)
    pose[:3, 3] = eye_v
    return pose


def check_pose(pose: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """An explicit camera→world pose as a float64 4 × 4, or ``invalid_pose``."""
    try:
        matrix = np.asarray(pose, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PermanentError("invalid_pose", "the pose must be a 4x4 matrix of numbers") from exc
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise PermanentError("invalid_pose", f"the pose must be a finite 4x4 matrix, got shape {matrix.shape}")
    rotation = matrix[:3, :3]
    if (
        not np.allclose(matrix[3], (0.0, 0.0, 0.0, 1.0), atol=ORTHONORMAL_TOL)
        or not np.allclose(rotation @ rotation.T, np.eye(3), atol=ORTHONORMAL_TOL)
        or np.linalg.det(rotation) < 0
    ):
        raise PermanentError("invalid_pose", "the pose is not a rigid transform (rotation + translation)")
    return matrix


@dataclass(frozen=True)
class CameraRig:
    """A camera on a robot link: the chain to the link and the camera→link ``mount`` (4 × 4)."""

    chain: KinematicChain
    mount: np.ndarray
    joint_names: tuple[str, ...] = SO101_JOINTS

    @classmethod
    def from_urdf(
        cls,
        urdf: str,
        link: str,
        xyz: Sequence[float] = (0.0, 0.0, 0.0),
        rpy: Sequence[float] = (0.0, 0.0, 0.0),
        joint_names: Sequence[str] = SO101_JOINTS,
    ) -> CameraRig:
        """A rig from URDF text, the camera's link and its mount (``xyz`` metres, ``rpy`` radians)."""
        chain = parse_urdf(urdf).chain(link)
        unnamed = [j for j in chain.movable if j not in joint_names]
        if unnamed:
            raise PermanentError("invalid_urdf", f"joint(s) {', '.join(unnamed)} are not in the joint order")
        return cls(chain, transform(xyz, rpy), tuple(joint_names))

    def camera_to_world(self, joint_angles: Sequence[float] | np.ndarray) -> np.ndarray:
        """The camera→world pose for one joint-angle sample (``joint_names`` order)."""
        if len(joint_angles) != len(self.joint_names):
            raise PermanentError(
                "invalid_joints", f"expected {len(self.joint_names)} joint angles, got {len(joint_angles)}"
            )
        pose: np.ndarray = self.chain.forward(dict(zip(self.joint_names, joint_angles, strict=True))) @ self.mount
        return pose


def resolve_pose(
    pose: Sequence[Sequence[float]] | np.ndarray | None,
    joint_angles: Sequence[float] | np.ndarray | None,
    rig: CameraRig | None,
) -> np.ndarray | None:
    """A frame's camera→world pose: ``pose`` if sent, else FK of ``joint_angles``, else ``None``."""
    if pose is not None:
        return check_pose(pose)
    if joint_angles is not None and rig is not None:
        return rig.camera_to_world(joint_angles)
    return None
