"""A Modal worker's feeder publishes its sourced session's input through the gateway (it cannot reach NATS).

:class:`GatewaySourcePublisher` posts to ``/v1/internal/sessions/{id}/source`` with the run's job-scoped
ingest token, where the gateway publishes exactly as a local worker's feeder does
(:class:`~services.common.session_publish.NatsSourcePublisher`). Connection errors and 408/429/5xx
answers are retried with a bounded back-off; a frame's resend is stored once (its ``Nats-Msg-Id``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import httpx

from contracts.session_feed import H_POSE, SourceControl, SourceJoints, SourcePublished

ATTEMPTS = 6
BACKOFF_S = 0.2
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class GatewaySourcePublisher:
    """One session's source routes on the gateway (``http``: a client holding the ingest token)."""

    def __init__(self, http: httpx.AsyncClient, ingest_url: str, session_id: str) -> None:
        base = ingest_url.split("/v1/internal/", 1)[0]
        self.http, self.url = http, f"{base}/v1/internal/sessions/{session_id}/source"

    async def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = await self.http.request(method, self.url + path, **options)
            except httpx.TransportError:
                if attempt == ATTEMPTS:
                    raise
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUSES or attempt == ATTEMPTS:
                    response.raise_for_status()
            await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def published(self) -> int:
        """The last frame seq published for the session."""
        return SourcePublished.model_validate_json((await self._send("GET", "")).content).published

    async def frame(self, seq: int, ts: float, content_type: str, data: bytes, pose: list[float] | None = None) -> None:
        """Frame ``seq`` as the request's body."""
        headers = {"Content-Type": content_type, **({H_POSE: json.dumps(pose)} if pose is not None else {})}
        await self._send("POST", "/frames", params={"seq": seq, "ts": repr(ts)}, content=data, headers=headers)

    async def joints(self, ts: float, angles: list[float]) -> None:
        """A joint sample of the session's robot."""
        body = SourceJoints(ts=ts, joint_angles=angles).model_dump(mode="json")
        await self._send("POST", "/joints", json=body)

    async def control(self, action: Literal["stop", "reset"], reason: str, nonce: int) -> None:
        """A reset or the stop."""
        body = SourceControl(action=action, reason=reason, nonce=nonce).model_dump(mode="json")
        await self._send("POST", "/control", json=body)
