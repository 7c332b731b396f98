"""Send a LeRobot arm's joint angles to gpurelay from its control loop, without ever slowing the loop.

The publisher is the Python client's (:class:`gpurelay_client.JointPublisher`, also
``client.robots.publisher(robot_id)``); this module keeps the CLI's ``(url, api_key, robot_id)``
signature for it. :meth:`~gpurelay_client.JointPublisher.publish` takes the follower's observation
dict as lerobot reports it (``shoulder_pan.pos`` … ``wrist_roll.pos`` in degrees, ``gripper.pos``
from 0 closed to 100 open) or a sequence of radians, converts it, stamps it and queues it; a
background thread sends the bounded queue over ``/v1/robots/{robot_id}/joints/ws`` in batches,
reconnecting with a bounded back-off and dropping (and counting) the oldest samples when full::

    with JointPublisher("http://gpurelay:8000", api_key, robot_id="arm-1") as arm:
        while running:
            arm.publish(robot.get_observation())
"""

from __future__ import annotations

from typing import Self

from gpurelay_client import JointPublisher as ClientJointPublisher
from gpurelay_client import PublisherStats, joint_radians
from gpurelay_client._joints import GRIPPER_CLOSED_RAD, GRIPPER_OPEN_RAD, gripper_radians, ws_path

__all__ = [
    "GRIPPER_CLOSED_RAD",
    "GRIPPER_OPEN_RAD",
    "JointPublisher",
    "PublisherStats",
    "gripper_radians",
    "joint_radians",
]


class JointPublisher:
    """The client's publisher for ``robot_id`` at the gateway ``url``, sending ``api_key``; its thread
    starts at once. ``publish``, ``stats``, ``close`` and ``with`` are the client publisher's."""

    def __init__(
        self,
        url: str,
        api_key: str,
        robot_id: str,
        *,
        max_pending: int = 1024,
        max_batch: int = 64,
        connect_timeout_s: float = 2.0,
        retry_max_s: float = 5.0,
    ) -> None:
        base = url.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        self.ws_url = base + ws_path(robot_id)
        self.publisher = ClientJointPublisher(
            self.ws_url,
            {"Authorization": f"Bearer {api_key}"},
            max_pending=max_pending,
            max_batch=max_batch,
            connect_timeout_s=connect_timeout_s,
            retry_max_s=retry_max_s,
        )
        self.publish, self.stats, self.close = self.publisher.publish, self.publisher.stats, self.publisher.close

    def start(self) -> Self:
        """The publisher itself: its thread already runs."""
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
