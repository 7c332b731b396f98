"""A joint publisher's close waits for the server's final ack, however long a loaded server takes.

The server here is a real WebSocket server that counts samples and, asked to close, answers its
final ack only after ``FINAL_ACK_DELAY_S``: longer than the second the publishers used to wait, so
they reported ``accepted == 0`` for samples the server had taken (a loaded CI gateway, flushing NATS
before its final ack, did exactly that).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from gpurelay_client import AsyncJointPublisher, JointPublisher
from websockets.sync.server import ServerConnection, serve

pytestmark = pytest.mark.timeout(60)
FINAL_ACK_DELAY_S = 1.5
SAMPLES = 20


def slow_final_ack(conn: ServerConnection) -> None:
    """Count samples; on ``{"type": "close"}``, wait, ack the count and close with 1000."""
    for accepted, message in enumerate(conn):
        if json.loads(message).get("type") == "close":
            time.sleep(FINAL_ACK_DELAY_S)
            conn.send(json.dumps({"type": "ack", "accepted": accepted, "rejected": 0}))
            conn.close()
            return


@pytest.fixture
def url() -> Iterator[str]:
    with serve(slow_final_ack, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/v1/robots/arm/joints/ws"
        server.shutdown()
        thread.join(10)


def test_the_blocking_publisher_waits_for_a_slow_final_ack(url: str) -> None:
    with JointPublisher(url, {}) as arm:
        for k in range(SAMPLES):
            arm.publish([0.01 * k] * 6)
    stats = arm.stats()
    assert (stats.sent, stats.accepted, stats.last_error) == (SAMPLES, SAMPLES, None)


async def test_the_asyncio_publisher_waits_for_a_slow_final_ack(url: str) -> None:
    async with AsyncJointPublisher(url, {}) as arm:
        for k in range(SAMPLES):
            await arm.publish([0.01 * k] * 6)
    stats = arm.stats()
    assert (stats.sent, stats.accepted, stats.last_error) == (SAMPLES, SAMPLES, None)
