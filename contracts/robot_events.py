"""Robot telemetry (``robots.{tenant}.{robot_id}.joints``): joint-angle samples.

A :class:`JointSample` is the payload of one ``robot.joints`` event; a :class:`JointBatch` is the
body of ``POST /v1/robots/{robot_id}/joints`` carrying several. Angles are radians, finite and
within ±2π; whether the count fits the robot (6 for an SO-100/101 arm) is the gateway's check.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from contracts.ids import ResourceId

MAX_JOINTS = 32
"""Most joints one sample may carry."""
MAX_BATCH = 1000
"""Most samples one batch may carry."""
ANGLE_LIMIT = 2 * math.pi
"""Largest absolute angle, in radians."""


def _angle(value: float) -> float:
    if not math.isfinite(value) or abs(value) > ANGLE_LIMIT:
        raise ValueError(f"joint angle must be finite and within ±2π radians (got {value!r})")
    return value


Angle = Annotated[float, AfterValidator(_angle)]
"""One joint angle in radians."""


class JointSample(BaseModel):
    """``robot.joints``: one robot's joint angles at ``ts``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    robot_id: ResourceId
    joint_angles: list[Angle] = Field(min_length=1, max_length=MAX_JOINTS)
    ts: AwareDatetime
    seq: int | None = Field(default=None, ge=0, description="The robot's own sample counter, if any.")


class JointBatch(BaseModel):
    """Several samples of one robot, oldest first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    samples: list[JointSample] = Field(min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _one_robot(self) -> JointBatch:
        if len({s.robot_id for s in self.samples}) > 1:
            raise ValueError("every sample in a batch must be of the same robot")
        return self
