"""Modal's sink: each event posted to the gateway's ingest route with the job-scoped token."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from contracts.api.sessions import SessionEntry
from contracts.envelope import EventEnvelope
from contracts.runs import RunRequest
from modal_workers.runtime.sinks.protocols import FeedPositions, OnFeedItem, SessionFeed
from services.common.observability import tracing

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class IngestSink:
    """Events to the gateway's ingest route with a job-scoped token, retried with backoff."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        attempts: int = 8,
        backoff_s: float = 0.2,
        backoff_max_s: float = 5.0,
        transport: Any = None,
    ) -> None:
        import httpx

        self.url, self.attempts, self.backoff_s, self.backoff_max_s = url, attempts, backoff_s, backoff_max_s
        self._token = token
        headers = {"Authorization": f"Bearer {token}"}
        self._http = httpx.AsyncClient(headers=headers, timeout=30, transport=transport)

    @classmethod
    async def create(cls, url: str, token: str, **options: Any) -> IngestSink:
        """A sink posting to ``url`` (the factory the runtime calls on its loop)."""
        return cls(url, token, **options)

    async def send(self, subject_event: str, event: EventEnvelope, *, dispatched_seq: int = 0) -> None:
        """POST one event until the gateway accepts it (202); raises after the last attempt. No fence
        (``dispatched_seq`` is 0 on Modal: its job.dispatched is published after the spawn)."""
        import httpx

        body = {"events": [event.model_dump(mode="json", exclude_none=True)]}
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self._http.post(self.url, json=body, headers=tracing.inject({}))
            except httpx.TransportError:
                if attempt == self.attempts:
                    raise
            else:
                if response.status_code < 400:
                    return
                if response.status_code not in RETRY_STATUSES or attempt == self.attempts:
                    response.raise_for_status()
            delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def open_session_feed(
        self, request: RunRequest, robot_id: str, on_item: OnFeedItem, positions: FeedPositions
    ) -> SessionFeed:
        """The session's feed over the gateway's feed socket (the gateway knows the robot and the start);
        a reconnect resumes after ``positions()`` (the last frame and joint stream sequences seen, and up to
        where its frames are a resumed session's restored memory)."""
        from modal_workers.runtime.session_feeds import GatewayFeed, feed_url

        feed = GatewayFeed(feed_url(self.url, request.job_id), self._token, on_item, positions)
        await feed.start()
        return feed

    async def open_session_source(self, request: RunRequest, entry: SessionEntry) -> Any:
        """A publisher of a sourced session's input through the gateway's internal source routes
        (:class:`~modal_workers.runtime.recording.gateway_source.GatewaySourcePublisher`)."""
        from modal_workers.runtime.recording.gateway_source import GatewaySourcePublisher

        return GatewaySourcePublisher(self._http, self.url, request.job_id)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()
