"""A robot's joint angles to the robots WebSocket from an asyncio control loop (``_sync_publisher`` is
the thread twin, and says what the queue, its policy and the close do: the same here, in a task)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from datetime import datetime
from types import TracebackType
from typing import Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from gpurelay_client._joints import CLOSE_MESSAGE, Counters, Joints, Policy, PublisherStats, sample_message


class AsyncJointPublisher:
    """Joint samples to ``/v1/robots/{robot_id}/joints/ws`` from a task (started at once, in the running loop)."""

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
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = asyncio.Event()
        self._close_by = 0.0  # set by close: when the final ack stops being waited for
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gpurelay-joints")

    async def publish(self, joints: Joints, ts: float | datetime | None = None) -> None:
        """Queue one sample; returns at once (``policy="block"``: once there is room, or after the timeout)."""
        message = sample_message(joints, ts)
        if self.policy == "block" and len(self._pending) >= self.max_pending:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.block_timeout_s):
                    while len(self._pending) >= self.max_pending:
                        await self._room.wait()
                        self._room.clear()
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self._counters.dropped += 1
        self._pending.append(message)
        self._counters.queued += 1
        self._wake.set()

    def stats(self) -> PublisherStats:
        """The totals so far."""
        return self._counters.snapshot()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, ask for a final ack and wait for it, all within about ``timeout_s``;
        stop the task. It returns as soon as the server has acked and closed the socket."""
        self._close_by = time.monotonic() + timeout_s
        self._closing.set()
        self._wake.set()
        try:
            async with asyncio.timeout(timeout_s + self.connect_timeout_s):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- the sending task -------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while not (self._closing.is_set() and not self._pending):
            try:
                async with connect(
                    self.url, additional_headers=self._headers, open_timeout=self.connect_timeout_s, close_timeout=1.0
                ) as ws:
                    self._counters.connects += 1
                    backoff = 0.1
                    await self._pump(ws)
                    return
            except (OSError, TimeoutError, WebSocketException) as exc:
                self._counters.last_error = f"{type(exc).__name__}: {exc}"
            if self._closing.is_set():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._closing.wait()
            backoff = min(self.retry_max_s, backoff * 2)

    async def _pump(self, ws: ClientConnection) -> None:
        """Send batches as they come; on close, the rest and a final ack. Raises when the socket breaks."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._wake.wait()
            self._wake.clear()
            await self._send_batch(ws)
            await self._read_acks(ws)
            if self._closing.is_set():
                while self._pending and await self._send_batch(ws):
                    pass
                await ws.send(CLOSE_MESSAGE)
                await self._read_final_ack(ws)
                return

    async def _send_batch(self, ws: ClientConnection) -> int:
        """Send up to ``max_batch`` of the oldest samples; each leaves the queue once sent."""
        count = 0
        while count < self.max_batch and self._pending:
            message = self._pending[0]
            await ws.send(message)
            if self._pending and self._pending[0] is message:
                self._pending.popleft()
                self._room.set()
            self._counters.sent += 1
            count += 1
        return count

    async def _read_final_ack(self, ws: ClientConnection) -> None:
        """Take replies until the server closes the socket after its final ack, or close's time is up."""
        while (left := self._close_by - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    raw = await ws.recv()
            except (TimeoutError, ConnectionClosed):
                return
            self._counters.reply(raw)

    async def _read_acks(self, ws: ClientConnection) -> None:
        """Take the acks and errors that have arrived, without waiting (beyond a millisecond)."""
        while True:
            try:
                async with asyncio.timeout(0.001):
                    raw = await ws.recv()
            except TimeoutError:
                return
            self._counters.reply(raw)
