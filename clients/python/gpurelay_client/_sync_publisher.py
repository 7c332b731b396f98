"""A robot's joint angles from a control loop to the robots WebSocket, on a background thread.

:meth:`JointPublisher.publish` converts and queues a sample under a lock held for O(1) work and
returns; the thread sends the queue in batches of ``max_batch``, reads the server's acks, and
reconnects with a bounded backoff. The queue holds ``max_pending`` samples: when the gateway is slow
or away, ``policy="drop_oldest"`` drops (and counts) the oldest, ``policy="block"`` makes ``publish``
wait for room (up to ``block_timeout_s``, then the oldest is dropped). ``close`` sends what is queued
(bounded), asks for a final ack and stops the thread. ``_async_publisher`` is the asyncio twin.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import datetime
from types import TracebackType
from typing import Self

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from gpurelay_client._joints import CLOSE_MESSAGE, Counters, Joints, Policy, PublisherStats, sample_message


class JointPublisher:
    """Joint samples to ``/v1/robots/{robot_id}/joints/ws`` on a background thread (started at once)."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        max_pending: int = 1024,
        max_batch: int = 64,
        policy: Policy = "drop_oldest",
        block_timeout_s: float = 1.0,
        connect_timeout_s: float = 2.0,
        retry_max_s: float = 5.0,
    ) -> None:
        if max_pending < 1 or max_batch < 1 or policy not in ("drop_oldest", "block"):
            raise ValueError("max_pending and max_batch must be >= 1; policy 'drop_oldest' or 'block'")
        self.url, self._headers = url, headers
        self.max_pending, self.max_batch, self.policy = max_pending, max_batch, policy
        self.block_timeout_s, self.connect_timeout_s, self.retry_max_s = block_timeout_s, connect_timeout_s, retry_max_s
        self._pending: deque[str] = deque()
        self._counters = Counters()
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._close_by = 0.0  # set by close: when the final ack stops being waited for
        self._thread = threading.Thread(target=self._run, name="gpurelay-joints", daemon=True)
        self._thread.start()

    def publish(self, joints: Joints, ts: float | datetime | None = None) -> None:
        """Queue one sample (radians, or a LeRobot observation dict; ``ts`` default now)."""
        message = sample_message(joints, ts)
        with self._lock:
            if self.policy == "block" and len(self._pending) >= self.max_pending:
                self._lock.wait_for(lambda: len(self._pending) < self.max_pending, self.block_timeout_s)
            if len(self._pending) >= self.max_pending:
                self._pending.popleft()
                self._counters.dropped += 1
            self._pending.append(message)
            self._counters.queued += 1
        self._wake.set()

    def stats(self) -> PublisherStats:
        """The totals so far."""
        with self._lock:
            return self._counters.snapshot()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, ask for a final ack and wait for it, all within about ``timeout_s``;
        stop the thread. It returns as soon as the server has acked and closed the socket."""
        self._close_by = time.monotonic() + timeout_s
        self._closing.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s + self.connect_timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- the sending thread -----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        while not (self._closing.is_set() and not self._pending):
            try:
                with connect(
                    self.url,
                    additional_headers=self._headers,
                    open_timeout=self.connect_timeout_s,
                    close_timeout=1.0,
                ) as ws:
                    with self._lock:
                        self._counters.connects += 1
                    backoff = 0.1
                    self._pump(ws)
                    return
            except (OSError, TimeoutError, WebSocketException) as exc:
                with self._lock:
                    self._counters.last_error = f"{type(exc).__name__}: {exc}"
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
            self._read_acks(ws)
            if self._closing.is_set():
                while self._pending and self._send_batch(ws):
                    pass
                ws.send(CLOSE_MESSAGE)
                self._read_final_ack(ws)
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
                    self._lock.notify()
                self._counters.sent += 1
            count += 1
        return count

    def _read_final_ack(self, ws: ClientConnection) -> None:
        """Take replies until the server closes the socket, which it does right after its final ack
        (a loaded server may take seconds to confirm the last samples), or until close's time is up."""
        while (left := self._close_by - time.monotonic()) > 0:
            try:
                raw = ws.recv(timeout=left)
            except (TimeoutError, ConnectionClosed):
                return
            with self._lock:
                self._counters.reply(raw)

    def _read_acks(self, ws: ClientConnection) -> None:
        """Take the acks and errors that have arrived, without waiting."""
        while True:
            try:
                raw = ws.recv(timeout=0.0)
            except TimeoutError:
                return
            with self._lock:
                self._counters.reply(raw)
