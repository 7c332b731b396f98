"""Robot telemetry (``robots.{tenant}.{robot_id}.joints``): joint-angle samples.

A :class:`JointSample` is the payload of one ``robot.joints`` event; a :class:`JointBatch` carries
several of one robot. The HTTP and WebSocket bodies that produce them are in
:mod:`contracts.api.robots`. Angles are radians, finite (as every contract's numbers:
:mod:`contracts.base`) and within ±2π (checked by pydantic-core, no Python call per angle);
whether the count fits the robot (6 for an SO-100/101 arm) is the gateway's check.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from contracts.base import Contract
from contracts.ids import ResourceId

MAX_JOINTS = 32
"""Most joints one sample may carry."""
MAX_BATCH = 1000
"""Most samples one batch may carry."""
ANGLE_LIMIT = 2 * math.pi
"""Largest absolute angle, in radians."""


Angle = Annotated[
    float,
    Field(
        strict=True,
        ge=-ANGLE_LIMIT,
        le=ANGLE_LIMIT,
        description="A joint angle in radians: finite, within ±2π.",
    ),
]
"""One joint angle in radians."""


class JointSample(Contract):
    """``robot.joints``: one robot's joint angles at ``ts``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    robot_id: ResourceId
    joint_angles: list[Angle] = Field(min_length=1, max_length=MAX_JOINTS)
    ts: AwareDatetime
    seq: int | None = Field(default=None, ge=0, description="The robot's own sample counter, if any.")


class JointBatch(Contract):
    """Several samples of one robot, oldest first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    samples: list[JointSample] = Field(min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _one_robot(self) -> JointBatch:
        if len({s.robot_id for s in self.samples}) > 1:
            raise ValueError("every sample in a batch must be of the same robot")
        return self
