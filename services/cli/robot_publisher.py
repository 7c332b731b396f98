"""Send a LeRobot arm's joint angles to gpurelay from its control loop, without ever slowing the loop.

No dependency on ``lerobot``: :meth:`JointPublisher.publish` takes the follower's observation dict as
lerobot reports it (``shoulder_pan.pos`` … ``wrist_roll.pos`` in degrees, ``gripper.pos`` from 0 closed
to 100 open) or a sequence of radians, converts it, stamps it with the time of the call and queues it.
A background thread sends the queue over the robots WebSocket (``/v1/robots/{robot_id}/joints/ws``)
in batches, reconnects with a bounded back-off, and reads the server's acks. The queue is bounded
(``max_pending``): when the gateway is slow or gone, the oldest samples are dropped and counted. The
caller's cost is a conversion and an append under a lock held for O(1) work::

    with JointPublisher("http://gpurelay:8000", api_key, robot_id="arm-1") as arm:
        while running:
            observation = robot.get_observation()
            ...
            arm.publish(observation)

The conversion (gripper convention included) is :func:`contracts.recordings.joints.joint_radians`, which a
session fed from a LeRobot dataset uses too.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from contracts.recordings.joints import (
    GRIPPER_CLOSED_RAD,
    GRIPPER_OPEN_RAD,
    SO101_OBSERVATION_KEYS,
    gripper_radians,
    joint_radians,
)

__all__ = [
    "GRIPPER_CLOSED_RAD",
    "GRIPPER_OPEN_RAD",
    "SO101_OBSERVATION_KEYS",
    "JointPublisher",
    "PublisherStats",
    "gripper_radians",
    "joint_radians",
]


@dataclass(frozen=True)
class PublisherStats:
    """Running totals of a publisher."""

    queued: int
    sent: int
    dropped: int
    accepted: int
    rejected: int
    connects: int
    last_error: str | None


class JointPublisher:
    """Joint samples from a control loop to ``/v1/robots/{robot_id}/joints/ws``, on a background thread."""

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
        self.ws_url = f"{base}/v1/robots/{robot_id}/joints/ws"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.max_batch, self.connect_timeout_s, self.retry_max_s = max_batch, connect_timeout_s, retry_max_s
        self._pending: deque[str] = deque()
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"joints-{robot_id}", daemon=True)
        self._queued = self._sent = self._dropped = self._accepted = self._rejected = self._connects = 0
        self._last_error: str | None = None

    def start(self) -> Self:
        """Start the sending thread (``with`` does it)."""
        self._thread.start()
        return self

    def publish(self, observation: Mapping[str, Any] | Iterable[float], ts: float | None = None) -> None:
        """Queue one sample (``ts``: Unix seconds, default now); never blocks, drops the oldest when full."""
        angles = joint_radians(observation)
        message = json.dumps({"joint_angles": angles, "ts": time.time() if ts is None else ts})
        with self._lock:
            if len(self._pending) >= self._max_pending:
                self._pending.popleft()
                self._dropped += 1
            self._pending.append(message)
            self._queued += 1
        self._wake.set()

    def stats(self) -> PublisherStats:
        """The totals so far (``accepted``/``rejected`` as the server last acked them, per connection)."""
        with self._lock:
            return PublisherStats(
                self._queued,
                self._sent,
                self._dropped,
                self._accepted,
                self._rejected,
                self._connects,
                self._last_error,
            )

    def close(self, timeout_s: float = 2.0) -> None:
        """Send what is queued (for at most ``timeout_s``), ask for a final ack, stop the thread."""
        self._closing.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s + self.connect_timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the sending thread -----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        while not (self._closing.is_set() and not self._pending):
            try:
                with connect(
                    self.ws_url,
                    additional_headers=self._headers,
                    open_timeout=self.connect_timeout_s,
                    close_timeout=1.0,
                ) as ws:
                    with self._lock:
                        self._connects += 1
                    backoff = 0.1
                    self._pump(ws)
                    return
            except (OSError, TimeoutError, WebSocketException) as exc:
                with self._lock:
                    self._last_error = f"{type(exc).__name__}: {exc}"
            if self._closing.is_set():
                return
            self._closing.wait(backoff)
            backoff = min(self.retry_max_s, backoff * 2)

    def _pump(self, ws: ClientConnection) -> None:
        """Send batches as they come; on close, the rest and a final ack. Raises when the socket breaks."""
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            self._send_batch(ws)
            self._read_acks(ws, wait_s=0.0)
            if self._closing.is_set():
                while self._pending and self._send_batch(ws):
                    pass
                ws.send(json.dumps({"type": "close"}))
                self._read_acks(ws, wait_s=1.0)
                return

    def _send_batch(self, ws: ClientConnection) -> int:
        """Send up to ``max_batch`` of the oldest samples; each leaves the queue once sent."""
        count = 0
        while count < self.max_batch:
            with self._lock:
                if not self._pending:
                    break
                message = self._pending[0]
            ws.send(message)
            with self._lock:
                if self._pending and self._pending[0] is message:
                    self._pending.popleft()
                self._sent += 1
            count += 1
        return count

    def _read_acks(self, ws: ClientConnection, wait_s: float) -> None:
        """Take the server's acks and errors that have arrived (waiting up to ``wait_s`` for the first)."""
        timeout = wait_s
        while True:
            try:
                raw = ws.recv(timeout=timeout)
            except TimeoutError:
                return
            timeout = 0.0
            reply = json.loads(raw)
            if reply.get("type") == "ack":
                with self._lock:
                    self._accepted, self._rejected = int(reply["accepted"]), int(reply["rejected"])
            elif reply.get("type") == "error":
                with self._lock:
                    self._last_error = str(reply.get("detail"))
