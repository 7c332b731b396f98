"""A live session as a robot client drives it through a fault, every request recorded in the history.

:class:`LiveSession` starts a ``vlm`` session (the echo workload) on its own robot, sends a JPEG
frame every :data:`FRAME_EVERY_S` (each sent once: a resent frame would be a second frame) and a
batch of joint samples every :data:`JOINTS_EVERY_S`, until told to stop; then asks the session to
stop and reads how it ended. Its ``session`` op completes ``ok`` with what the session's record
says at the end (status, error code, the seqs the worker processed, frames dropped), ``unknown``
if it never ended within :data:`END_WITHIN_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from tests.support.netns.load import SUBMIT_FOR_S, Clients
from tests.support.sessions import jpeg

FRAME_EVERY_S = 0.5
JOINTS_EVERY_S = 0.25
JOINTS_PER_BATCH = 3
END_WITHIN_S = 90.0
TERMINAL = ("succeeded", "failed", "canceled")


class LiveSession:
    """Session ``name`` of ``clients``: started by :meth:`run`, which streams until ``stop`` is set."""

    def __init__(self, clients: Clients, name: str) -> None:
        self.clients, self.name = clients, name
        self.robot = f"arm-{uuid.uuid4().hex[:8]}"
        self.session_id: str | None = None
        self.frames_acked: list[int] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Start the session, stream frames and joints until ``stop``, stop it and record how it ended."""
        history = self.clients.history
        key = uuid.uuid4().hex
        op = history.invoke(self.name, "session", key)
        body = {"kind": "vlm", "robot_id": self.robot, "params": {}}
        started = history.invoke(self.name, "session-start", key)
        await self.clients.call(started, "POST", "/v1/sessions", {200, 201}, body, {"Idempotency-Key": key},
                                SUBMIT_FOR_S)  # fmt: skip
        if started.outcome != "ok":
            history.complete(op, started.outcome or "unknown", started.value)
            return
        self.session_id = op.key = str(started.value["id"])
        streaming = [asyncio.create_task(self._frames(stop)), asyncio.create_task(self._joints(stop))]
        await asyncio.gather(*streaming)
        stopping = history.invoke(self.name, "session-stop", self.session_id)
        path, retried = f"/v1/sessions/{self.session_id}/stop", frozenset({429})  # not 409: the session ended
        await self.clients.call(stopping, "POST", path, {200, 202}, retry_for_s=SUBMIT_FOR_S, retried=retried)
        record = await self._ended()
        if record is None:
            history.complete(op, "unknown", "the session never ended")
        else:
            history.complete(op, "ok", _ending(record, self.frames_acked))

    async def _frames(self, stop: asyncio.Event) -> None:
        seq = 0
        while not stop.is_set():
            op = self.clients.history.invoke(self.name, "frame", f"{self.session_id}:{seq}")
            headers = {"Content-Type": "image/jpeg"}
            answer = await self.clients.call(op, "POST", f"/v1/sessions/{self.session_id}/frames", {202},
                                             jpeg(seq), headers)  # fmt: skip
            if op.outcome == "ok":
                self.frames_acked.append(int(op.value["seq"]))
            elif answer is not None and answer.status_code == 409:  # the session has ended
                return
            seq += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FRAME_EVERY_S)

    async def _joints(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            op = self.clients.history.invoke(self.name, "joints", self.robot)
            samples = [{"joint_angles": [0.1 * i] * 6, "ts": time.time()} for i in range(JOINTS_PER_BATCH)]
            await self.clients.call(op, "POST", f"/v1/robots/{self.robot}/joints", {202}, {"samples": samples})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), JOINTS_EVERY_S)

    async def _ended(self) -> dict[str, Any] | None:
        """The session's record once terminal (``None`` if not within :data:`END_WITHIN_S`)."""
        deadline = time.monotonic() + END_WITHIN_S
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                answer = await self.clients.http.get(f"{self.clients.gateway}/v1/jobs/{self.session_id}")
                record: dict[str, Any] = answer.json()
                if answer.status_code == 200 and record.get("status") in TERMINAL:
                    return record
            await asyncio.sleep(0.3)
        return None


def _ending(record: dict[str, Any], acked: list[int]) -> dict[str, Any]:
    """What the checker needs of a session's final record."""
    result = record.get("result") or {}
    metrics = (record.get("progress") or {}).get("metrics") or {}
    return {
        "status": record.get("status"),
        "error": (record.get("error") or {}).get("code"),
        "message": (record.get("error") or {}).get("message"),
        "processed": list(result.get("seqs") or []),
        "dropped": int(metrics.get("frames_dropped") or 0),
        "acked": list(acked),
    }
