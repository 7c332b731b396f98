"""Forward kinematics of a URDF with numpy, for the splat workload's camera poses.

API:

* :func:`parse_urdf` (text) / :func:`load_urdf` (path) → :class:`Urdf`: every joint by name, each a
  :class:`Joint` (type ``revolute``, ``continuous``, ``prismatic`` or ``fixed``, its origin as a 4 × 4
  parent→joint transform from ``xyz``/``rpy``, its unit ``axis``). Other joint types, a missing
  parent/child, a zero axis or malformed numbers raise :class:`~modal_workers.runtime.worker_runtime.PermanentError`
  ``invalid_urdf``.
* :meth:`Urdf.chain` (tip link, base link default the root) → :class:`KinematicChain`, the joints from
  the base down to the tip; :meth:`KinematicChain.forward` (joint positions by name) → the 4 × 4
  tip→base transform; :meth:`KinematicChain.link_poses` the same for every link along the way.
* :func:`transform` (xyz, rpy) → 4 × 4, with URDF's rpy convention (fixed axes: roll about x, then
  pitch about y, then yaw about z, i.e. ``R = Rz(yaw) Ry(pitch) Rx(roll)``); :func:`matrix_to_rpy` its
  inverse; :func:`synthetic_arm_urdf` the text of the shipped 6-joint test arm (SO-101 joint names).

Joint positions are radians (revolute, continuous) or metres (prismatic); limits are not enforced:
a robot reports where it is, and clamping would hide a calibration error.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from modal_workers.runtime.worker_runtime import PermanentError

SO101_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
"""The SO-100/101 joint order of a joint-angle sample (LeRobot's order)."""
JOINT_TYPES = ("revolute", "continuous", "prismatic", "fixed")
MAX_URDF_CHARS = 1 << 20
"""A robot description longer than this is refused (meshes are not needed, only joints)."""


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: the 3 × 3 rotation by ``angle`` about the unit ``axis``."""
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    rotation: np.ndarray = np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)
    return rotation


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF rpy (fixed axes x, y, z) → 3 × 3 rotation ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    ex, ey, ez = np.eye(3)
    rotation: np.ndarray = _rotation(ez, yaw) @ _rotation(ey, pitch) @ _rotation(ex, roll)
    return rotation


def matrix_to_rpy(rotation: np.ndarray) -> tuple[float, float, float]:
    """The rpy of a 3 × 3 rotation (inverse of :func:`rpy_to_matrix`; pitch in [-π/2, π/2])."""
    r = np.asarray(rotation, dtype=np.float64)
    pitch = math.asin(max(-1.0, min(1.0, -r[2, 0])))
    if abs(r[2, 0]) < 1.0 - 1e-9:
        return math.atan2(r[2, 1], r[2, 2]), pitch, math.atan2(r[1, 0], r[0, 0])
    return 0.0, pitch, math.atan2(-r[0, 1], r[1, 1])  # gimbal lock: put all of it into yaw


def transform(xyz: Sequence[float] = (0.0, 0.0, 0.0), rpy: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """The 4 × 4 transform of a URDF ``<origin xyz rpy>``."""
    out = np.eye(4)
    out[:3, :3] = rpy_to_matrix(*(float(v) for v in rpy))
    out[:3, 3] = [float(v) for v in xyz]
    return out


@dataclass(frozen=True)
class Joint:
    """One URDF joint: ``origin`` is parent→joint frame, ``axis`` a unit vector in the joint frame."""

    name: str
    kind: str
    parent: str
    child: str
    origin: np.ndarray
    axis: np.ndarray

    def motion(self, position: float) -> np.ndarray:
        """The 4 × 4 joint-frame→child transform at ``position``."""
        out = np.eye(4)
        if self.kind in ("revolute", "continuous"):
            out[:3, :3] = _rotation(self.axis, position)
        elif self.kind == "prismatic":
            out[:3, 3] = self.axis * position
        return out


@dataclass(frozen=True)
class KinematicChain:
    """The joints from ``base`` to ``tip``, in that order."""

    base: str
    tip: str
    joints: tuple[Joint, ...]

    @property
    def movable(self) -> tuple[str, ...]:
        """Names of the chain's non-fixed joints, base first."""
        return tuple(j.name for j in self.joints if j.kind != "fixed")

    def link_poses(self, positions: Mapping[str, float]) -> list[np.ndarray]:
        """Each joint's child link → base transform, base first (one per joint)."""
        missing = [name for name in self.movable if name not in positions]
        if missing:
            raise PermanentError("invalid_joints", f"no position for joint(s) {', '.join(missing)}")
        pose, poses = np.eye(4), []
        for joint in self.joints:
            position = float(positions[joint.name]) if joint.kind != "fixed" else 0.0
            if not math.isfinite(position):
                raise PermanentError("invalid_joints", f"joint {joint.name} position is not finite")
            pose = pose @ joint.origin @ joint.motion(position)
            poses.append(pose)
        return poses

    def forward(self, positions: Mapping[str, float]) -> np.ndarray:
        """The 4 × 4 tip→base transform at ``positions`` (joint name → value; extra names ignored)."""
        poses = self.link_poses(positions)
        return poses[-1] if poses else np.eye(4)


@dataclass(frozen=True)
class Urdf:
    """A parsed robot description: joints by name, and the link each joint moves."""

    name: str
    joints: Mapping[str, Joint]

    @property
    def root(self) -> str:
        """The link no joint moves (the first one when there are several trees)."""
        children = {j.child for j in self.joints.values()}
        parents = [j.parent for j in self.joints.values() if j.parent not in children]
        if not parents:
            raise PermanentError("invalid_urdf", "the URDF's joints form no tree (no root link)")
        return parents[0]

    def chain(self, tip: str, base: str | None = None) -> KinematicChain:
        """The chain from ``base`` (default: the root) down to link ``tip``."""
        base = base or self.root
        by_child = {j.child: j for j in self.joints.values()}
        joints: list[Joint] = []
        link = tip
        while link != base:
            joint = by_child.get(link)
            if joint is None or len(joints) > len(self.joints):
                raise PermanentError("invalid_urdf", f"link {tip!r} is not below link {base!r}")
            joints.append(joint)
            link = joint.parent
        return KinematicChain(base, tip, tuple(reversed(joints)))


def _floats(text: str | None, default: tuple[float, ...], what: str) -> tuple[float, ...]:
    if text is None:
        return default
    try:
        values = tuple(float(v) for v in text.split())
    except ValueError:
        values = ()
    if len(values) != len(default) or not all(math.isfinite(v) for v in values):
        raise PermanentError("invalid_urdf", f"{what} must be {len(default)} finite numbers, got {text!r}")
    return values


def _joint(element: ET.Element) -> Joint:
    name, kind = element.get("name", ""), element.get("type", "")
    if kind not in JOINT_TYPES:
        raise PermanentError("invalid_urdf", f"joint {name!r}: unsupported type {kind!r}")
    parent, child = element.find("parent"), element.find("child")
    if not name or parent is None or child is None or not parent.get("link") or not child.get("link"):
        raise PermanentError("invalid_urdf", f"joint {name!r} needs a name, a parent link and a child link")
    origin = element.find("origin")
    xyz = _floats(origin.get("xyz") if origin is not None else None, (0.0, 0.0, 0.0), f"joint {name} xyz")
    rpy = _floats(origin.get("rpy") if origin is not None else None, (0.0, 0.0, 0.0), f"joint {name} rpy")
    axis_el = element.find("axis")
    axis = np.array(_floats(axis_el.get("xyz") if axis_el is not None else None, (1.0, 0.0, 0.0), f"joint {name} axis"))
    norm = float(np.linalg.norm(axis))
    if kind != "fixed" and norm < 1e-9:
        raise PermanentError("invalid_urdf", f"joint {name!r} has a zero axis")
    return Joint(
        name, kind, str(parent.get("link")), str(child.get("link")), transform(xyz, rpy), axis / norm if norm else axis
    )


def parse_urdf(text: str) -> Urdf:
    """Parse a URDF document (only joints matter for kinematics; at most ``MAX_URDF_CHARS``)."""
    if len(text) > MAX_URDF_CHARS:
        raise PermanentError("invalid_urdf", f"the URDF is longer than {MAX_URDF_CHARS} characters")
    try:
        # expat >= 2.4.1 caps entity expansion and ElementTree never loads external entities.
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError as exc:
        raise PermanentError("invalid_urdf", f"the URDF is not XML: {exc}") from exc
    if root.tag != "robot":
        raise PermanentError("invalid_urdf", f"the root element is <{root.tag}>, not <robot>")
    joints = {j.name: j for j in map(_joint, root.iter("joint"))}
    return Urdf(root.get("name", ""), joints)


def load_urdf(path: str | Path) -> Urdf:
    """Parse the URDF file at ``path``."""
    return parse_urdf(Path(path).read_text())


def synthetic_arm_urdf() -> str:
    """The text of the shipped synthetic 6-joint arm (``modal_workers/assets/synthetic_arm.urdf``)."""
    return resources.files("modal_workers").joinpath("assets/synthetic_arm.urdf").read_text()
