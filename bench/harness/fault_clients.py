"""Clients of the fault suite, acting as real ones do while services and NATS nodes fail.

* :func:`submit`: a job with an ``Idempotency-Key``, the submission retried until the gateway
  answers (a gateway may be down; the key makes the retries one job);
* :class:`SseReader`: one job's SSE stream to its terminal event (the Python client's ``jobs.stream``),
  reopened with ``Last-Event-ID`` whenever it breaks, counting how often it had to.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from gpurelay_client import APIError, AsyncClient, Event, StreamError

from bench.harness.fault_stack import FaultStack

JOB = {"kind": "pose", "inputs": {"video": {"url": "https://example.com/lap.mp4"}}}
CALL_TIMEOUT_S = 60.0
RESUME_S = 0.2
"""The pause before a broken stream is opened again."""
MAX_FAILURES = 600
"""Openings in a row without an event before the reader gives up."""
NOT_NOW = frozenset({429, 502, 503, 504})


async def call(
    method: str, url: str, key: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A gateway call as a client makes it: retried on a transport error or a 5xx until it answers."""
    deadline = time.monotonic() + CALL_TIMEOUT_S
    sent = {"Authorization": f"Bearer {key}", **(headers or {})}
    async with httpx.AsyncClient(timeout=10.0) as http:
        while True:
            try:
                response = await http.request(method, url, json=body, headers=sent)
                if response.status_code < 500:
                    assert response.status_code in (200, 201), response.text
                    answer: dict[str, Any] = response.json()
                    return answer
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} {url} unanswered for {CALL_TIMEOUT_S}s")
            await asyncio.sleep(0.2)


async def submit(stack: FaultStack, key: str) -> str:
    """Submit one ``pose`` job with a fresh ``Idempotency-Key`` (retried until the gateway answers); its id."""
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    job = await call("POST", f"{stack.gateway.url}/v1/jobs", key, JOB, headers)
    return str(job["id"])


async def add_endpoint(stack: FaultStack, key: str, url: str) -> str:
    """Register a webhook endpoint for every ``job.*`` event; its signing secret."""
    endpoint = await call("POST", f"{stack.gateway.url}/v1/webhooks", key, {"url": url, "events": ["job.*"]})
    return str(endpoint["secret"])


class SseReader:
    """Follows one job's SSE stream to its terminal event, reconnecting with Last-Event-ID (as a client does).

    Each opening is one ``jobs.stream`` with no reconnection of its own (``stream_max_reconnects=0``), so
    the reader sees every break, counts it, and resumes after the last event it read."""

    def __init__(self, base_url: str, key: str, job_id: str) -> None:
        self.job_id, self.base_url, self.key = job_id, base_url, key
        self.events: list[Event] = []
        self.connections = 0
        """How many openings of the stream delivered events: 1 + the resumptions."""
        self.failures = 0
        """Openings in a row, up to now, that delivered no event."""
        self.last_error: str | None = None
        """The last error an opening ended with (what a stalled reader was told)."""
        self.task = asyncio.create_task(self._read(), name=f"sse:{job_id}")

    async def _read(self) -> None:
        async with AsyncClient(self.base_url, api_key=self.key, timeout=10.0, stream_max_reconnects=0) as client:
            while not (self.events and self.events[-1].terminal):
                after = self.events[-1].id if self.events else None
                read = len(self.events)
                try:
                    async for event in client.jobs.stream(self.job_id, after=after):
                        self.events.append(event)
                except APIError as exc:
                    self.last_error = repr(exc)
                    if exc.status not in NOT_NOW:
                        raise
                except StreamError as exc:
                    self.last_error = repr(exc)
                self.connections += len(self.events) > read
                self.failures = 0 if len(self.events) > read else self.failures + 1
                if self.failures > MAX_FAILURES:
                    raise StreamError(f"{self.job_id}: {self.failures} openings in a row without an event")
                if not self.events[-1:] or not self.events[-1].terminal:
                    await asyncio.sleep(RESUME_S)

    def where(self) -> str:
        """Where the reader is: events read, the last one, openings and the last error."""
        last = f"{self.events[-1].type} at {self.events[-1].id}" if self.events else "none"
        return (f"{len(self.events)} events read (last: {last}), {self.connections} openings with events, "
                f"{self.failures} without in a row, last error {self.last_error}")  # fmt: skip

    @property
    def seqs(self) -> list[int]:
        """The ``id`` (stream sequence) of every event read, in the order read."""
        return [int(e.id) for e in self.events if e.id is not None]


async def start_session(stack: FaultStack, key: str) -> str:
    """Start a ``vlm`` session (the echo workload in the fault stack); its id."""
    session = await call("POST", f"{stack.gateway.url}/v1/sessions", key, {"kind": "vlm", "params": {}})
    return str(session["id"])


async def send_frame(stack: FaultStack, key: str, session_id: str, data: bytes) -> int:
    """POST one JPEG frame to a session (sent once: a retried frame would be a second frame); its seq."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.post(
            f"{stack.gateway.url}/v1/sessions/{session_id}/frames", content=data,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"},
        )  # fmt: skip
    assert response.status_code == 202, response.text
    return int(response.json()["seq"])
