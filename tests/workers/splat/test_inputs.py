"""From a received frame to a posed training image: the rig and intrinsics a session resolves, the pose order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from contracts.specs.session_params import SplatParams
from modal_workers.runtime.session_frames import SessionFrame
from modal_workers.runtime.worker_runtime import PermanentError
from modal_workers.splat.camera import CameraRig, Intrinsics, look_at
from modal_workers.splat.inputs import Posed, Skipped, frame_source, intrinsics_for, urdf_path
from modal_workers.splat.kinematics import synthetic_arm_urdf
from modal_workers.splat.settings import SplatSettings
from modal_workers.splat.synth import arm_angles, synthetic_rig
from services.cli.dev import dev_worker_env

DEV = SplatSettings(urdf="synthetic_arm.urdf")
"""What ``gpurelay dev``'s workers resolve."""


def png(width: int = 64, height: int = 48) -> bytes:
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def frame(seq: int = 1, data: bytes | None = None, pose: np.ndarray | None = None, joints: Any = None) -> SessionFrame:
    flat = None if pose is None else [float(v) for v in pose.flatten()]
    return SessionFrame(seq, 0.0, "image/png", png() if data is None else data, flat, joints)


def test_gpurelay_dev_poses_frames_with_the_synthetic_arms_camera_link() -> None:
    assert dev_worker_env({}) == {"GPURELAY_SPLAT_URDF": "synthetic_arm.urdf"}
    assert dev_worker_env({"GPURELAY_SPLAT_URDF": "/robots/so101.urdf"}) == {}  # the operator's choice wins
    source = frame_source(SplatParams(), DEV, on_cuda=False)
    assert source.rig is not None
    rig = source.rig
    for t in np.linspace(0.0, 6.0, 25):  # the URDF's camera_link is the mount the synthetic frames are made with
        angles = arm_angles(float(t))
        np.testing.assert_allclose(rig.camera_to_world(angles), synthetic_rig().camera_to_world(angles), atol=1e-9)


def test_pose_order_explicit_then_joints_then_none_with_a_reason() -> None:
    source = frame_source(SplatParams(), DEV, on_cuda=False)
    explicit = look_at((0.3, 0.1, 0.4), (0.42, 0.0, 0.05))
    angles = list(arm_angles(0.7))
    both = source.prepare(frame(pose=explicit, joints=angles))
    assert isinstance(both, Posed)
    assert both.source == "pose"
    np.testing.assert_allclose(both.camera.cam_to_world, explicit)
    by_joints = source.prepare(frame(joints=angles))
    assert isinstance(by_joints, Posed)
    assert by_joints.source == "joints"
    np.testing.assert_allclose(by_joints.camera.cam_to_world, synthetic_rig().camera_to_world(angles), atol=1e-9)
    none = source.prepare(frame(seq=7))
    why = "frame 7 has no pose and no joint sample within joint_tolerance_ms of its time"
    assert none == Skipped(7, "no_pose", why)
    no_rig = frame_source(SplatParams(), SplatSettings(), on_cuda=False).prepare(frame(seq=8, joints=angles))
    assert isinstance(no_rig, Skipped)
    assert no_rig.kind == "no_pose"
    assert "no URDF is configured" in no_rig.reason
    assert "GPURELAY_SPLAT_URDF" in no_rig.reason


def test_bad_frames_are_skipped_not_fatal() -> None:
    source = frame_source(SplatParams(), DEV, on_cuda=False)
    undecodable = source.prepare(frame(seq=3, data=b"\x89PNG\r\n\x1a\nnot really"))
    assert undecodable == Skipped(3, "invalid", "frame 3 is not a decodable JPEG or PNG image")
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    bad_pose = source.prepare(frame(seq=4, pose=sheared))
    assert isinstance(bad_pose, Skipped)
    assert (bad_pose.kind, "rigid transform" in bad_pose.reason) == ("no_pose", True)
    five = source.prepare(frame(seq=5, joints=[0.0] * 5))
    assert isinstance(five, Skipped)
    assert "expected 6 joint angles, got 5" in five.reason


def test_intrinsics_come_from_params_then_settings_and_scale_with_the_frame() -> None:
    params = SplatParams.model_validate({"intrinsics": {"fx": 500.0, "fy": 510.0, "cx": 320.0}})
    assert intrinsics_for(params.intrinsics, DEV, 640, 480) == Intrinsics(500.0, 510.0, 320.0, 240.0, 640, 480)
    fov = SplatParams.model_validate({"intrinsics": {"hfov_deg": 90.0}})
    assert intrinsics_for(fov.intrinsics, DEV, 640, 480).fx == pytest.approx(320.0)
    settings = SplatSettings(fx=400.0, fy=400.0)
    assert intrinsics_for(None, settings, 640, 480) == Intrinsics(400.0, 400.0, 320.0, 240.0, 640, 480)
    assert intrinsics_for(None, DEV, 640, 480) == Intrinsics.from_fov(640, 480, 60.0)
    source = frame_source(params, DEV, on_cuda=False)  # 160 px on the CPU by default
    posed = source.prepare(frame(data=png(640, 480), pose=np.eye(4)))
    assert isinstance(posed, Posed)
    assert posed.image.shape == (120, 160, 3)
    assert posed.camera.intrinsics == Intrinsics(125.0, 127.5, 80.0, 60.0, 160, 120)
    assert frame_source(params, SplatSettings(max_image_side=1000), on_cuda=False).max_side == 1000
    assert frame_source(params, SplatSettings(), on_cuda=True).max_side == 1024


def test_urdfs_come_from_the_deployments_folder_only(tmp_path: Path) -> None:
    (tmp_path / "arm.urdf").write_text(synthetic_arm_urdf())
    settings = SplatSettings(robots_dir=tmp_path)
    assert urdf_path("arm.urdf", settings) == tmp_path / "arm.urdf"
    assert urdf_path(None, SplatSettings(urdf=str(tmp_path / "arm.urdf"))) == tmp_path / "arm.urdf"  # the operator's
    assert urdf_path(None, SplatSettings()) is None
    (tmp_path / "link.urdf").symlink_to("/etc/hostname")
    for name, fragment in (("missing.urdf", "no URDF 'missing.urdf'"), ("link.urdf", "outside the deployment")):
        with pytest.raises(PermanentError) as caught:
            urdf_path(name, settings)
        assert caught.value.code == "invalid_urdf"
        assert fragment in caught.value.message
    with pytest.raises(PermanentError) as caught:
        frame_source(SplatParams(camera_link="no_such_link"), DEV, on_cuda=False)
    assert caught.value.code == "invalid_urdf"
    mounted = SplatParams.model_validate({"camera_link": "gripper_link", "camera_mount": {"xyz": [0.0, 0.0, 0.1]}})
    rig = frame_source(mounted, DEV, on_cuda=False).rig
    expected = CameraRig.from_urdf(synthetic_arm_urdf(), "gripper_link", (0.0, 0.0, 0.1))
    assert rig is not None
    np.testing.assert_allclose(rig.camera_to_world([0.1] * 6), expected.camera_to_world([0.1] * 6))


def test_settings_are_checked() -> None:
    for bad in ({"fx": 400.0}, {"near_m": 2.0, "far_m": 1.0}):
        with pytest.raises(ValueError, match="GPURELAY_SPLAT_"):
            SplatSettings(**bad)  # type: ignore[arg-type]
