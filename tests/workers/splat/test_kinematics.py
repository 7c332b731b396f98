"""URDF forward kinematics and camera poses of the splat workload (numpy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modal_workers.runtime.worker_runtime import PermanentError
from modal_workers.splat.camera import CameraRig, Intrinsics, check_pose, look_at, resolve_pose, rigid_inverse
from modal_workers.splat.kinematics import (
    SO101_JOINTS,
    matrix_to_rpy,
    parse_urdf,
    rpy_to_matrix,
    synthetic_arm_urdf,
    transform,
)

PLANAR = """<robot name="planar">
  <link name="base"/><link name="l1"/><link name="l2"/><link name="tip"/><link name="slider"/>
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/>
    <origin xyz="0 0 0.1"/><axis xyz="0 0 1"/></joint>
  <joint name="j2" type="continuous"><parent link="l1"/><child link="l2"/>
    <origin xyz="0.2 0 0" rpy="0 0 0"/><axis xyz="0 0 2"/></joint>
  <joint name="tip_fixed" type="fixed"><parent link="l2"/><child link="tip"/>
    <origin xyz="0.15 0 0" rpy="0 0 1.5707963267948966"/></joint>
  <joint name="slide" type="prismatic"><parent link="base"/><child link="slider"/>
    <origin xyz="1 2 3" rpy="1.5707963267948966 0 0"/><axis xyz="0 0 1"/></joint>
</robot>"""


LINKS = "<parent link='a'/><child link='b'/>"


def rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def quaternion_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """A rotation built another way (unit quaternion), to check Rodrigues against."""
    x, y, z = np.asarray(axis) / np.linalg.norm(axis) * math.sin(angle / 2)
    w = math.cos(angle / 2)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def test_hand_computed_planar_arm() -> None:
    chain = parse_urdf(PLANAR).chain("tip")
    assert [j.name for j in chain.joints] == ["j1", "j2", "tip_fixed"]
    assert chain.movable == ("j1", "j2")
    pose = chain.forward({"j1": math.pi / 2, "j2": -math.pi / 2, "unrelated": 5.0})
    # base→l1 lifts 0.1 and turns 90°: the 0.2 link points along +y; j2 turns back: the 0.15 link along +x.
    np.testing.assert_allclose(pose[:3, 3], [0.15, 0.2, 0.1], atol=1e-12)
    np.testing.assert_allclose(pose[:3, :3], rot_z(math.pi / 2), atol=1e-12)  # only the fixed joint's yaw is left
    np.testing.assert_allclose(pose[3], [0, 0, 0, 1])


def test_prismatic_joint_moves_along_its_rotated_axis() -> None:
    chain = parse_urdf(PLANAR).chain("slider")
    pose = chain.forward({"slide": 0.5})
    # roll 90° about x turns the joint's z axis into the parent's -y.
    np.testing.assert_allclose(pose[:3, 3], [1.0, 2.0 - 0.5, 3.0], atol=1e-12)
    np.testing.assert_allclose(pose[:3, :3] @ [0, 1, 0], [0, 0, 1], atol=1e-12)


def test_zero_pose_of_the_synthetic_arm_is_its_summed_offsets() -> None:
    urdf = parse_urdf(synthetic_arm_urdf())
    chain = urdf.chain("gripper_link")
    assert urdf.root == "world"
    assert chain.movable == SO101_JOINTS[:5]
    pose = chain.forward(dict.fromkeys(SO101_JOINTS, 0.0))
    np.testing.assert_allclose(pose[:3, 3], [0.03, 0.0, 0.01 + 0.05 + 0.05 + 0.11 + 0.13 + 0.05], atol=1e-12)
    np.testing.assert_allclose(pose[:3, :3], np.eye(3), atol=1e-12)
    jaw = urdf.chain("jaw_link").forward(dict.fromkeys(SO101_JOINTS, 0.0))
    np.testing.assert_allclose(jaw[:3, 3], [0.05, 0.0, 0.44], atol=1e-12)


def test_random_poses_compose_step_by_step_and_stay_rigid() -> None:
    urdf = parse_urdf(synthetic_arm_urdf())
    chain = urdf.chain("jaw_link")
    rng = np.random.default_rng(7)
    for _ in range(50):
        angles = dict(zip(SO101_JOINTS, rng.uniform(-math.pi, math.pi, 6), strict=True))
        expected = np.eye(4)
        for joint in chain.joints:
            motion = np.eye(4)
            if joint.kind != "fixed":
                motion[:3, :3] = quaternion_rotation(joint.axis, angles[joint.name])
            expected = expected @ joint.origin @ motion
        poses = chain.link_poses(angles)
        np.testing.assert_allclose(poses[-1], expected, atol=1e-12)
        np.testing.assert_allclose(chain.forward(angles), expected, atol=1e-12)
        for pose in poses:
            np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-12)
            assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0)
        # Turning shoulder_pan spins the whole arm about the base's z axis: height and radius stay.
        turned = chain.forward({**angles, "shoulder_pan": angles["shoulder_pan"] + 0.7})
        assert turned[2, 3] == pytest.approx(expected[2, 3])
        assert np.hypot(*turned[:2, 3]) == pytest.approx(np.hypot(*expected[:2, 3]))


def test_rpy_is_urdfs_fixed_axis_convention_and_inverts() -> None:
    roll, pitch, yaw = 0.3, -0.4, 1.1
    rx = np.array([[1, 0, 0], [0, math.cos(roll), -math.sin(roll)], [0, math.sin(roll), math.cos(roll)]])
    ry = np.array([[math.cos(pitch), 0, math.sin(pitch)], [0, 1, 0], [-math.sin(pitch), 0, math.cos(pitch)]])
    np.testing.assert_allclose(rpy_to_matrix(roll, pitch, yaw), rot_z(yaw) @ ry @ rx, atol=1e-12)
    rng = np.random.default_rng(1)
    for angles in [*rng.uniform([-3, -1.5, -3], [3, 1.5, 3], (20, 3)), (0.0, math.pi / 2, 0.4)]:
        back = matrix_to_rpy(rpy_to_matrix(*angles))
        np.testing.assert_allclose(rpy_to_matrix(*back), rpy_to_matrix(*angles), atol=1e-9)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("<robot><joint name='j' type='floating'><parent link='a'/><child link='b'/></joint></robot>", "type"),
        ("<robot><joint name='j' type='revolute'><parent link='a'/></joint></robot>", "child"),
        (f"<robot><joint name='j' type='revolute'>{LINKS}<axis xyz='0 0 0'/></joint></robot>", "zero axis"),
        (f"<robot><joint name='j' type='fixed'>{LINKS}<origin xyz='1 nan 0'/></joint></robot>", "finite"),
        (f"<robot><joint name='j' type='fixed'>{LINKS}<origin xyz='1 2'/></joint></robot>", "3 finite"),
        ("<robot", "not XML"),
        ("<model/>", "<robot>"),
    ],
)
def test_bad_urdfs_are_refused_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(PermanentError) as caught:
        parse_urdf(text)
    assert caught.value.code == "invalid_urdf"
    assert fragment in caught.value.message


def test_chain_needs_a_reachable_link_and_every_position() -> None:
    urdf = parse_urdf(PLANAR)
    with pytest.raises(PermanentError, match="not below"):
        urdf.chain("nowhere")
    with pytest.raises(PermanentError, match="not below"):
        urdf.chain("tip", base="slider")
    with pytest.raises(PermanentError, match="j2") as caught:
        urdf.chain("tip").forward({"j1": 0.0})
    assert caught.value.code == "invalid_joints"
    with pytest.raises(PermanentError, match="finite"):
        urdf.chain("tip").forward({"j1": 0.0, "j2": math.inf})


def test_intrinsics_from_a_field_of_view() -> None:
    k = Intrinsics.from_fov(64, 48, 90.0)
    assert (k.fx, k.fy, k.cx, k.cy) == pytest.approx((32.0, 32.0, 32.0, 24.0))
    np.testing.assert_allclose(k.matrix(), [[32, 0, 32], [0, 32, 24], [0, 0, 1]])
    assert Intrinsics.from_fov(100, 100, 60.0).fx == pytest.approx(50.0 / math.tan(math.radians(30.0)))
    for bad in (0.0, 180.0):
        with pytest.raises(PermanentError):
            Intrinsics.from_fov(64, 64, bad)
    with pytest.raises(PermanentError):
        Intrinsics(-1.0, 1.0, 0.0, 0.0, 64, 64)


def test_look_at_puts_the_target_on_the_optical_axis() -> None:
    pose = look_at((1.0, 2.0, 3.0), (0.0, 0.0, 0.0))
    in_camera = rigid_inverse(pose) @ np.array([0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(in_camera[:2], [0.0, 0.0], atol=1e-12)
    assert in_camera[2] == pytest.approx(math.sqrt(14.0))
    up_in_camera = pose[:3, :3].T @ np.array([0.0, 0.0, 1.0])
    assert up_in_camera[1] < 0  # world up is image up (camera y points down)


def test_rig_pose_is_link_pose_times_mount() -> None:
    rig = CameraRig.from_urdf(synthetic_arm_urdf(), "gripper_link", (0.01, 0.02, 0.03), (0.1, 0.2, 0.3))
    angles = [0.1, -0.2, 0.3, 0.4, -0.5, 0.9]
    link = parse_urdf(synthetic_arm_urdf()).chain("gripper_link").forward(dict(zip(SO101_JOINTS, angles, strict=True)))
    np.testing.assert_allclose(rig.camera_to_world(angles), link @ transform((0.01, 0.02, 0.03), (0.1, 0.2, 0.3)))
    with pytest.raises(PermanentError, match="6 joint angles") as caught:
        rig.camera_to_world([0.0] * 5)
    assert caught.value.code == "invalid_joints"
    with pytest.raises(PermanentError, match="not in the joint order"):
        CameraRig.from_urdf(synthetic_arm_urdf(), "gripper_link", joint_names=("shoulder_pan",))


def test_pose_resolution_order() -> None:
    rig = CameraRig.from_urdf(synthetic_arm_urdf(), "gripper_link")
    explicit = look_at((0.5, 0.0, 0.5), (0.0, 0.0, 0.0))
    angles = [0.2] * 6
    np.testing.assert_array_equal(resolve_pose(explicit.tolist(), angles, rig), explicit)
    np.testing.assert_array_equal(resolve_pose(None, angles, rig), rig.camera_to_world(angles))
    assert resolve_pose(None, angles, None) is None
    assert resolve_pose(None, None, rig) is None


@pytest.mark.parametrize(
    "pose",
    [
        np.eye(3),
        np.full((4, 4), np.nan),
        np.diag([2.0, 1.0, 1.0, 1.0]),
        np.diag([-1.0, 1.0, 1.0, 1.0]),
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]],
        "pose",
    ],
)
def test_malformed_explicit_poses_are_refused(pose: object) -> None:
    with pytest.raises(PermanentError) as caught:
        check_pose(pose)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_pose"
