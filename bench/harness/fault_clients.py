"""Clients of the fault suite, acting as real ones do while services and NATS nodes fail.

* :func:`submit`: a job with an ``Idempotency-Key``, the submission retried until the gateway
  answers (a gateway may be down; the key makes the retries one job);
* :class:`SseReader`: one job's SSE stream to its terminal event, reopened with ``Last-Event-ID``
  whenever it breaks (``services.cli.client.follow_events``), counting how often it had to.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from bench.harness.fault_stack import FaultStack
from services.cli.client import SseEvent, follow_events

JOB = {"kind": "pose", "inputs": {"video": {"url": "https://example.com/lap.mp4"}}}
CALL_TIMEOUT_S = 60.0


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
    """Follows one job's SSE stream to its terminal event, reconnecting with Last-Event-ID (as a client does)."""

    def __init__(self, base_url: str, key: str, job_id: str) -> None:
        self.job_id = job_id
        self.url = f"{base_url}/v1/jobs/{job_id}/events"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.events: list[SseEvent] = []
        self.connections = 0
        """How many times the stream was opened (answered 200): 1 + the resumptions."""
        self.task = asyncio.create_task(self._read(), name=f"sse:{job_id}")

    async def _read(self) -> None:
        async def opened(response: httpx.Response) -> None:
            self.connections += response.status_code == 200

        async with httpx.AsyncClient(timeout=10.0, event_hooks={"response": [opened]}) as http:
            async for event in follow_events(http, self.url, self.headers, max_retries=600, retry_s=0.2):
                self.events.append(event)

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
