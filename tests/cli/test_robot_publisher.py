"""The LeRobot joint publisher against a real gateway over a real WebSocket, and against none.

Observation dicts (degrees, gripper 0–100) arrive in TELEMETRY as radians in joint order; a control
loop's call costs well under a millisecond when the gateway is gone; samples queued while it is down
are sent (the newest ``max_pending``) once it comes up.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import numpy as np
import pytest
from nats.js import JetStreamContext

from contracts.streams import KV_APIKEYS, Declarations
from contracts.subjects import Namespace, Subjects
from services.cli.robot_publisher import (
    GRIPPER_CLOSED_RAD,
    GRIPPER_OPEN_RAD,
    JointPublisher,
    gripper_radians,
    joint_radians,
)
from services.common.auth.apikeys import ApiKeyStore
from services.common.nats.server.embedded import EmbeddedNats
from services.gateway.app import create_app
from tests.support.gateway import Gateway, Tenant, gateway_settings
from tests.support.http import bound_socket, serve
from tests.support.robots import read_samples

ROBOT = "so101-pub"


def observation(i: int) -> dict[str, object]:
    """A follower observation as lerobot reports it, plus a camera image the publisher must ignore."""
    return {
        "shoulder_pan.pos": 10.0 + i,
        "shoulder_lift.pos": -45.0,
        "elbow_flex.pos": 90.0,
        "wrist_flex.pos": 0.0,
        "wrist_roll.pos": -180.0,
        "gripper.pos": 50.0,
        "front": np.zeros((4, 4, 3), dtype=np.uint8),
    }


def test_observations_convert_to_radians_in_joint_order() -> None:
    angles = joint_radians(observation(0))
    assert angles[:5] == pytest.approx([math.radians(d) for d in (10, -45, 90, 0, -180)])
    assert angles[5] == pytest.approx((GRIPPER_CLOSED_RAD + GRIPPER_OPEN_RAD) / 2)
    assert (gripper_radians(0), gripper_radians(100)) == (GRIPPER_CLOSED_RAD, GRIPPER_OPEN_RAD)
    assert gripper_radians(150) == GRIPPER_OPEN_RAD
    assert joint_radians(np.array([0.5, 1.2, -0.3, 0.0, 0.1, 0.5])) == [0.5, 1.2, -0.3, 0.0, 0.1, 0.5]
    with pytest.raises(KeyError):
        joint_radians({"shoulder_pan.pos": 1.0})


async def test_a_control_loop_reaches_telemetry_in_order(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    publisher = JointPublisher(gateway.url, acme.key, ROBOT).start()
    try:
        for i in range(50):
            publisher.publish(observation(i), ts=1_700_000_000.0 + i / 30)
        samples = await read_samples(js, namespace, subjects.robot_joints("acme", ROBOT), 50)
    finally:
        await asyncio.to_thread(publisher.close)
    assert [s.joint_angles[0] for s in samples] == pytest.approx([math.radians(10 + i) for i in range(50)])
    assert samples[7].ts.timestamp() == pytest.approx(1_700_000_000.0 + 7 / 30)
    stats = publisher.stats()
    assert (stats.sent, stats.dropped, stats.accepted, stats.rejected) == (50, 0, 50, 0)


def test_a_dead_gateway_costs_the_loop_under_a_millisecond_a_call() -> None:
    sock = bound_socket()
    sock.listen(1)  # a frozen gateway: TCP connects, the WebSocket handshake never answers
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with JointPublisher(url, "gr_nothing", ROBOT, max_pending=100, connect_timeout_s=0.5) as publisher:
        took = []
        for i in range(2000):
            start = time.perf_counter()
            publisher.publish(observation(i))
            took.append(time.perf_counter() - start)
    stats = publisher.stats()  # after close: the thread gave up on its handshake
    sock.close()
    assert sorted(took)[len(took) // 2] < 1e-3
    assert sum(took) / len(took) < 1e-3
    assert (stats.queued, stats.sent, stats.dropped) == (2000, 0, 1900)
    assert stats.last_error is not None
    assert "Timeout" in stats.last_error


async def test_samples_queued_while_the_gateway_is_down_arrive_when_it_comes_up(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    namespace: Namespace,
    declared: Declarations,
    js: JetStreamContext,
    subjects: Subjects,
) -> None:
    _, key = await ApiKeyStore(await js.key_value(namespace.bucket(KV_APIKEYS))).create("acme")
    sock = bound_socket()  # the gateway's port, refusing connections until the gateway serves on it
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = gateway_settings(tmp_path / "data", url, nats_url=nats_server.url, namespace=namespace.name)
    publisher = JointPublisher(url, key, ROBOT, max_pending=20, retry_max_s=0.2).start()
    try:
        for i in range(30):
            publisher.publish(observation(i))
        assert publisher.stats().dropped == 10
        with serve(create_app(settings), sock, ws_max_size=settings.ws_max_message_bytes):
            samples = await read_samples(js, namespace, subjects.robot_joints("acme", ROBOT), 20)
            await asyncio.to_thread(publisher.close)
    finally:
        await asyncio.to_thread(publisher.close)
    assert [round(math.degrees(s.joint_angles[0])) for s in samples] == list(range(20, 40))
    stats = publisher.stats()
    assert (stats.sent, stats.dropped, stats.connects) == (20, 10, 1)
