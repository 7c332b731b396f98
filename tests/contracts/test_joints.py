"""A dataset row's state in radians: lerobot's SO-101 degrees converted, gpurelay's radians kept."""

from __future__ import annotations

import math

import pytest

from contracts.recordings.joints import GRIPPER_OPEN_RAD, SO101_OBSERVATION_KEYS, named_radians


def test_so101_readings_are_converted_and_radians_kept() -> None:
    converted = named_radians(SO101_OBSERVATION_KEYS, [90.0, -45.0, 0.0, 180.0, 10.0, 100.0])
    assert converted[:5] == pytest.approx([math.pi / 2, -math.pi / 4, 0.0, math.pi, math.radians(10)])
    assert converted[5] == pytest.approx(GRIPPER_OPEN_RAD)
    bare = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    assert named_radians(bare, [0.5, 1.0, -0.2, 0.0, 0.1, 0.3]) == [0.5, 1.0, -0.2, 0.0, 0.1, 0.3]
    assert named_radians(None, [0.25]) == [0.25]
