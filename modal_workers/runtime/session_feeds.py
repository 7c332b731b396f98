"""A remote worker's session feed: the gateway's feed socket, for workers that cannot reach NATS (Modal).

:class:`GatewayFeed` opens ``WS /v1/internal/sessions/{id}/feed`` with the run's job-scoped ingest token
and hands every item to ``on_item`` in order, exactly as the local pool's NATS feed
(:class:`~services.common.session_feed.NatsSessionFeed`) does: ``(FeedFrame, image bytes)``,
``(FeedJoints, None)``, ``(FeedControl, None)``, ``(FeedBacklog, None)``. When the socket drops it
reconnects (bounded back-off) with ``?after_frames=&after_joints=`` from ``positions()``, so nothing is
handed over twice and nothing in between is lost; while a resumed session's restored frames (its memory)
are still to come, ``&restored_until=`` says up to where they go, so the relay does not drop them as a
backlog of live frames. A refusal (bad token, no such session) ends the feed;
the session's idle timeout then stops the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from pydantic import ValidationError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from contracts.session_feed import FeedBacklog, FeedControl, FeedFrame, FeedJoints, decode_frame, decode_text

log = logging.getLogger(__name__)
OnItem = Callable[[FeedFrame | FeedJoints | FeedControl | FeedBacklog, bytes | None], None]
FINAL_CLOSE_CODES = frozenset({1008, 4401, 4403, 4404})
"""Close codes after which reconnecting cannot help."""
FEED_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""The largest feed message taken (a frame is capped at the gateway, 8 MiB by default)."""


def feed_url(ingest_url: str, session_id: str) -> str:
    """The feed socket beside an ingest route: ``http(s)://host/v1/internal/...`` → ``ws(s)://host/v1/...``."""
    base = ingest_url.split("/v1/internal/", 1)[0]
    base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{base}/v1/internal/sessions/{session_id}/feed"


class GatewayFeed:
    """The items of one session from the gateway's feed socket, to ``on_item``; reconnects after drops."""

    def __init__(
        self,
        url: str,
        token: str,
        on_item: OnItem,
        positions: Callable[[], tuple[int, int, int]],
        *,
        retry_max_s: float = 5.0,
        max_message_bytes: int = FEED_MAX_MESSAGE_BYTES,
    ) -> None:
        self.url, self.on_item, self.positions = url, on_item, positions
        self.retry_max_s, self.max_message_bytes = retry_max_s, max_message_bytes
        self._headers = {"Authorization": f"Bearer {token}"}
        self._task: asyncio.Task[None] | None = None
        self.connects = 0
        self.ended: str | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        """Start reading in the background (on the caller's event loop)."""
        self._task = asyncio.create_task(self._run(), name=f"feed {self.url}")

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            after_frames, after_joints, restored_until = self.positions()
            url = f"{self.url}?after_frames={after_frames}&after_joints={after_joints}"
            if restored_until > after_frames:
                url += f"&restored_until={restored_until}"
            try:
                async with connect(url, additional_headers=self._headers, max_size=self.max_message_bytes) as ws:
                    self.connects += 1
                    self.connected.set()
                    backoff = 0.1
                    async for message in ws:
                        self._take(message)
                code = ws.close_code
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
            except InvalidStatus as exc:
                code = 4404 if exc.response.status_code == 404 else None
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                log.info("session feed %s: %s; reconnecting", self.url, exc)
                code = None
            finally:
                self.connected.clear()
            if code in FINAL_CLOSE_CODES:
                self.ended = f"refused ({code})"
                log.warning("session feed %s refused with %s", self.url, code)
                return
            await asyncio.sleep(backoff)
            backoff = min(self.retry_max_s, backoff * 2)

    def _take(self, message: str | bytes) -> None:
        try:
            if isinstance(message, bytes):
                header, data = decode_frame(message)
                self.on_item(header, data)
            else:
                self.on_item(decode_text(message), None)
        except (ValueError, ValidationError):
            log.warning("skipping a malformed feed message")

    async def ended_for_good(self) -> str | None:
        """Wait until the feed gave up (a refusal); why. Only for a feed that will be refused."""
        if self._task is not None:
            await asyncio.shield(self._task)
        return self.ended

    async def stop(self) -> None:
        """Stop reading (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
