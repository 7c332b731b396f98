"""Joint angles for ``/v1/robots/{robot_id}/joints``, shared by the HTTP verb and both publishers.

A sample is a sequence of radians in joint order, or a LeRobot SO-100/101 follower's observation
dict (``shoulder_pan.pos`` … ``wrist_roll.pos`` in degrees, ``gripper.pos`` 0 closed … 100 open,
mapped linearly onto the SO-101 URDF's gripper range); other keys (camera images …) are ignored.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

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
Joints = Mapping[str, Any] | Iterable[float]
Policy = Literal["drop_oldest", "block"]
"""What a full publisher queue does with a new sample: drop the oldest queued one, or make publish wait."""


def gripper_radians(percent: float) -> float:
    """``gripper.pos`` (0 closed … 100 open, clamped) → the gripper joint's angle in radians."""
    p = min(100.0, max(0.0, float(percent)))
    return GRIPPER_CLOSED_RAD + p / 100.0 * (GRIPPER_OPEN_RAD - GRIPPER_CLOSED_RAD)


def joint_radians(joints: Joints) -> list[float]:
    """An observation dict or a sequence of radians → radians in joint order (a missing key: ``KeyError``)."""
    if isinstance(joints, Mapping):
        *arm, gripper = SO101_OBSERVATION_KEYS
        return [math.radians(float(joints[key])) for key in arm] + [gripper_radians(joints[gripper])]
    return [float(angle) for angle in joints]


def timestamp(ts: float | datetime | None) -> float | str:
    """A sample's ``ts`` as the API takes it: Unix seconds (default now) or an RFC 3339 time."""
    if ts is None:
        return time.time()
    return ts.isoformat() if isinstance(ts, datetime) else float(ts)


def sample(joints: Joints, ts: float | datetime | None = None, seq: int | None = None) -> dict[str, Any]:
    """One sample's JSON object."""
    body: dict[str, Any] = {"joint_angles": joint_radians(joints), "ts": timestamp(ts)}
    if seq is not None:
        body["seq"] = seq
    return body


def sample_message(joints: Joints, ts: float | datetime | None = None) -> str:
    """One sample as a text message of the robots WebSocket."""
    return json.dumps(sample(joints, ts), separators=(",", ":"))


CLOSE_MESSAGE = '{"type":"close"}'
"""Asks the server for a final ack, after which it closes the socket."""


@dataclass(frozen=True)
class PublisherStats:
    """A publisher's running totals: ``queued`` by the loop, ``sent`` on the socket, ``dropped`` from a
    full queue, ``accepted``/``rejected`` as the server last acked them (per connection), ``connects``."""

    queued: int
    sent: int
    dropped: int
    accepted: int
    rejected: int
    connects: int
    last_error: str | None


@dataclass
class Counters:
    """The mutable totals behind :class:`PublisherStats` (guarded by the publisher's lock)."""

    queued: int = 0
    sent: int = 0
    dropped: int = 0
    accepted: int = 0
    rejected: int = 0
    connects: int = 0
    last_error: str | None = None

    def snapshot(self) -> PublisherStats:
        return PublisherStats(
            self.queued, self.sent, self.dropped, self.accepted, self.rejected, self.connects, self.last_error
        )

    def reply(self, raw: str | bytes) -> None:
        """Take one message of the server: an ack's totals, or an error's detail."""
        reply = json.loads(raw)
        if reply.get("type") == "ack":
            self.accepted, self.rejected = int(reply["accepted"]), int(reply["rejected"])
        elif "detail" in reply:
            self.last_error = str(reply["detail"])


def ws_path(robot_id: str) -> str:
    """The robot's joints socket path."""
    from gpurelay_client._core import segment

    return f"/v1/robots/{segment(robot_id)}/joints/ws"
