"""How a splat session's frames become posed training images: the rig, the intrinsics, the pose.

:func:`frame_source` builds a :class:`FrameSource` once per session from its params and the
deployment's :class:`~modal_workers.splat.settings.SplatSettings` (each param left ``None`` takes the
setting): the URDF (a name under ``robots_dir``, by default the URDFs shipped in
``modal_workers/assets``; the setting may also be an absolute path), the camera link and mount, the
intrinsics, the largest image side trained on. A URDF that cannot be read, or a link it lacks, fails
the session at once (``invalid_urdf``): every frame would go unposed.

:meth:`FrameSource.prepare` turns one :class:`~modal_workers.runtime.session_input.SessionFrame` into a
:class:`Posed` image (RGB uint8, downscaled to ``max_side`` with the intrinsics scaled alike) or a
:class:`Skipped` with the reason a person can act on. Pose order: the explicit 4 × 4 pose sent with
the frame, else forward kinematics of its matched joint sample, else none (``no_pose``). A frame that
does not decode, or a malformed pose or joint sample, is skipped (``invalid`` / ``no_pose``), never
fatal: one bad frame must not end a live session.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from contracts.specs.session_params import CameraIntrinsics, SplatParams
from modal_workers.runtime.session_frames import SessionFrame
from modal_workers.runtime.worker_runtime import PermanentError
from modal_workers.splat.camera import Camera, CameraRig, Intrinsics, resolve_pose
from modal_workers.splat.settings import SplatSettings

CPU_MAX_SIDE, CUDA_MAX_SIDE = 160, 1024
"""The longest image side trained on when ``GPURELAY_SPLAT_MAX_IMAGE_SIDE`` is not set."""


@dataclass(frozen=True)
class Posed:
    """A frame ready to train on."""

    seq: int
    image: np.ndarray
    camera: Camera
    source: Literal["pose", "joints"]


@dataclass(frozen=True)
class Skipped:
    """A frame that cannot be used: ``kind`` is the counter it goes to, ``reason`` says why."""

    seq: int
    kind: Literal["invalid", "no_pose"]
    reason: str


def shipped_robots_dir() -> Path:
    """The URDFs shipped with the workers (``modal_workers/assets``)."""
    return Path(str(resources.files("modal_workers").joinpath("assets")))


def urdf_path(requested: str | None, settings: SplatSettings) -> Path | None:
    """The URDF file of a session: its ``urdf`` param (a name under the robots folder), else the setting."""
    folder = settings.robots_dir or shipped_robots_dir()
    name = requested or settings.urdf
    if name is None:
        return None
    path = Path(name) if requested is None and Path(name).is_absolute() else folder / name
    if requested is not None and not path.resolve().is_relative_to(folder.resolve()):
        raise PermanentError("invalid_urdf", f"the URDF {requested!r} is outside the deployment's robot folder")
    if not path.is_file():
        raise PermanentError("invalid_urdf", f"no URDF {name!r} in this deployment")
    return path


def camera_rig(params: SplatParams, settings: SplatSettings) -> CameraRig | None:
    """The camera on the robot (``None`` when the deployment has no URDF and the params name none)."""
    path = urdf_path(params.urdf, settings)
    if path is None:
        return None
    mount = params.camera_mount
    xyz, rpy = (mount.xyz, mount.rpy) if mount is not None else (settings.camera_xyz, settings.camera_rpy)
    return CameraRig.from_urdf(path.read_text(), params.camera_link or settings.camera_link, xyz, rpy)


def intrinsics_for(given: CameraIntrinsics | None, settings: SplatSettings, width: int, height: int) -> Intrinsics:
    """The intrinsics of a ``width`` × ``height`` frame: from the params, else from the settings."""
    if given is not None and given.fx is not None and given.fy is not None:
        cx, cy = given.cx, given.cy
        return Intrinsics(given.fx, given.fy, width / 2 if cx is None else cx, height / 2 if cy is None else cy,
                          width, height)  # fmt: skip
    if given is not None and given.hfov_deg is not None:
        return Intrinsics.from_fov(width, height, given.hfov_deg)
    if settings.fx is not None and settings.fy is not None:
        cx, cy = settings.cx, settings.cy
        return Intrinsics(settings.fx, settings.fy, width / 2 if cx is None else cx, height / 2 if cy is None else cy,
                          width, height)  # fmt: skip
    return Intrinsics.from_fov(width, height, settings.hfov_deg)


def downscale(image: np.ndarray, k: Intrinsics, max_side: int) -> tuple[np.ndarray, Intrinsics]:
    """``image`` shrunk so that its longest side is at most ``max_side``, with its intrinsics scaled alike."""
    height, width = image.shape[:2]
    scale = max_side / max(width, height)
    if scale >= 1.0:
        return image, k
    import cv2

    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    sx, sy = size[0] / width, size[1] / height
    return np.ascontiguousarray(small), Intrinsics(k.fx * sx, k.fy * sy, k.cx * sx, k.cy * sy, size[0], size[1])


@dataclass(frozen=True)
class FrameSource:
    """One session's way from a received frame to a posed image (see the module docstring)."""

    rig: CameraRig | None
    intrinsics: CameraIntrinsics | None
    settings: SplatSettings
    max_side: int

    def prepare(self, frame: SessionFrame) -> Posed | Skipped:
        """The frame decoded, downscaled and posed, or why it is skipped."""
        try:
            image = frame.image()
        except Exception:  # noqa: BLE001 - any decoder failure is a bad frame, not a dead session
            image = None
        if image is None:
            return Skipped(frame.seq, "invalid", f"frame {frame.seq} is not a decodable JPEG or PNG image")
        try:
            pose = None if frame.pose is None else np.asarray(frame.pose, dtype=np.float64).reshape(4, 4)
            cam_to_world = resolve_pose(pose, frame.joints, self.rig)
        except PermanentError as exc:
            return Skipped(frame.seq, "no_pose", f"frame {frame.seq}: {exc.message}")
        if cam_to_world is None:
            return Skipped(frame.seq, "no_pose", self._why_no_pose(frame))
        height, width = image.shape[:2]
        image, k = downscale(image, intrinsics_for(self.intrinsics, self.settings, width, height), self.max_side)
        return Posed(frame.seq, image, Camera(k, cam_to_world), "pose" if frame.pose is not None else "joints")

    def _why_no_pose(self, frame: SessionFrame) -> str:
        if self.rig is None:
            return (
                f"frame {frame.seq} has no pose, and no URDF is configured to pose frames from joint angles "
                "(set the session's urdf param or GPURELAY_SPLAT_URDF)"
            )
        return f"frame {frame.seq} has no pose and no joint sample within joint_tolerance_ms of its time"


def frame_source(params: SplatParams, settings: SplatSettings, on_cuda: bool) -> FrameSource:
    """The session's :class:`FrameSource` (raises ``invalid_urdf`` when the robot cannot be set up)."""
    max_side = settings.max_image_side or (CUDA_MAX_SIDE if on_cuda else CPU_MAX_SIDE)
    return FrameSource(camera_rig(params, settings), params.intrinsics, settings, max_side)
