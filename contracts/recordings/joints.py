"""Joint angles as gpurelay carries them: radians in joint order, converted from LeRobot's SO-100/101 readings.

lerobot's SO-100/101 follower reports ``shoulder_pan.pos`` … ``wrist_roll.pos`` in degrees and
``gripper.pos`` from 0 (closed) to 100 (open); gpurelay's samples are radians in the URDF's joint
order, the gripper mapped linearly onto the SO-101 URDF's gripper range, so a splat of the arm opens
its gripper as far as the real one. The robot publisher (``services/cli/robot_publisher.py``) and a
session fed from a LeRobot dataset convert with the same function.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SO101_OBSERVATION_KEYS = (
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "elbow_flex.pos",
    "wrist_flex.pos",
    "wrist_roll.pos",
    "gripper.pos",
)
"""The follower's observation keys, in joint order (lerobot's SO-100/101 names)."""

GRIPPER_CLOSED_RAD = -0.174533
GRIPPER_OPEN_RAD = 1.74533
"""The SO-101 gripper joint's range in its URDF: ``gripper.pos`` 0 and 100 map onto these."""


def gripper_radians(percent: float) -> float:
    """``gripper.pos`` (0 closed … 100 open, clamped) → the gripper joint's angle in radians."""
    p = min(100.0, max(0.0, float(percent)))
    return GRIPPER_CLOSED_RAD + p / 100.0 * (GRIPPER_OPEN_RAD - GRIPPER_CLOSED_RAD)


def joint_radians(observation: Mapping[str, Any] | Iterable[float]) -> list[float]:
    """An observation dict (degrees, gripper 0–100) or a sequence of radians → radians in joint order.

    Other keys of the dict (camera images, …) are ignored; a missing joint key is a ``KeyError``.
    """
    if isinstance(observation, Mapping):
        *arm, gripper = SO101_OBSERVATION_KEYS
        return [math.radians(float(observation[key])) for key in arm] + [gripper_radians(observation[gripper])]
    return [float(angle) for angle in observation]


def named_radians(names: Sequence[str] | None, values: Sequence[float]) -> list[float]:
    """A dataset row's state as radians: lerobot's SO-100/101 readings (``names`` are
    :data:`SO101_OBSERVATION_KEYS`) converted, anything else (gpurelay's bare names) taken as radians."""
    if names is not None and tuple(names) == SO101_OBSERVATION_KEYS:
        return joint_radians(dict(zip(names, values, strict=True)))
    return [float(v) for v in values]
