"""Robot flows both clients run: joint angles over HTTP (one sample or a batch) and the latest sample."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from gpurelay_client._core import Flow, Request, call, segment
from gpurelay_client._joints import Joints, sample
from gpurelay_client._models import JointsAccepted, JointSample


def send_flow(robot_id: str, body: dict[str, object], retries: int) -> Flow[JointsAccepted]:
    """``POST /v1/robots/{id}/joints`` (not retried once sent: samples would be published twice)."""
    request = Request("POST", f"/v1/robots/{segment(robot_id)}/joints", json=body, retryable=False)
    return call(request, JointsAccepted, retries)


def joints_body(joint_angles: Joints, ts: float | datetime | None, seq: int | None) -> dict[str, object]:
    """One sample's body."""
    return sample(joint_angles, ts, seq)


def batch_body(samples: Iterable[tuple[Joints, float | datetime | None]]) -> dict[str, object]:
    """A batch's body, oldest first."""
    return {"samples": [sample(joints, ts) for joints, ts in samples]}


def latest_flow(robot_id: str, retries: int) -> Flow[JointSample]:
    """``GET /v1/robots/{id}/joints/latest``."""
    return call(Request("GET", f"/v1/robots/{segment(robot_id)}/joints/latest"), JointSample, retries)
