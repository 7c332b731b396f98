"""``WS /v1/internal/sessions/{id}/feed``: a remote session worker's frames, joints and control.

A worker that cannot reach NATS (a Modal class) opens this socket with its job-scoped ingest token
(``Authorization: Bearer``, or a first ``{"auth": token}`` message); the gateway reads the session's
feed from JetStream (:class:`~services.common.session_feed.NatsSessionFeed`, the very reader a local
worker uses) and relays it: frames as binary messages, joints, control and the backlog mark as text
(:mod:`contracts.session_feed`). ``?after_frames=`` / ``?after_joints=`` (stream sequences) resume a
reconnecting worker after what it saw. The relay holds at most ``session_feed_buffer`` frames for a
worker that falls behind (the oldest is dropped: the worker counts the gap in ``seq``) and at most
:data:`JOINTS_HELD` joint samples. The socket takes no messages from the worker: one closes it (1008).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from fastapi import WebSocket, WebSocketDisconnect

from contracts.session_feed import FeedBacklog, FeedControl, FeedFrame, FeedJoints, encode_frame
from services.common.auth.apikeys import Principal
from services.common.auth.ingest_tokens import verify_ingest_token
from services.common.auth.tokens import TokenExpiredError, TokenInvalidError
from services.common.observability.metrics import SESSION_FEED_DROPPED
from services.common.session_feed import FeedItem, FeedStart, NatsSessionFeed
from services.gateway.sessions.http import PrincipalOf, socket_session
from services.gateway.sessions.intake import SessionIntake
from services.gateway.ws_auth import WS_POLICY, WS_UNAUTHORIZED

log = logging.getLogger(__name__)
JOINTS_HELD = 4096
"""Joint samples the relay holds for a worker that falls behind (the oldest go first)."""


class Relay:
    """Feed items waiting for the socket: frames and joints bounded, control never dropped."""

    def __init__(self, max_frames: int) -> None:
        self.max_frames = max_frames
        self.items: deque[tuple[FeedItem, bytes | None]] = deque()
        self.frames = self.joints = self.dropped = 0
        self.ready = asyncio.Event()

    def put(self, item: FeedItem, data: bytes | None) -> None:
        """Called by the feed on the event loop; never blocks."""
        self.items.append((item, data))
        if isinstance(item, FeedFrame):
            self.frames += 1
            if self.frames > self.max_frames:
                self._drop_oldest(FeedFrame)
        elif isinstance(item, FeedJoints):
            self.joints += 1
            if self.joints > JOINTS_HELD:
                self._drop_oldest(FeedJoints)
        self.ready.set()

    def _drop_oldest(self, kind: type) -> None:
        for index, (item, _) in enumerate(self.items):
            if isinstance(item, kind):
                del self.items[index]
                self.dropped += 1
                SESSION_FEED_DROPPED.labels("frame" if kind is FeedFrame else "joints").inc()
                if kind is FeedFrame:
                    self.frames -= 1
                else:
                    self.joints -= 1
                return

    async def take(self) -> tuple[FeedItem, bytes | None]:
        """The oldest waiting item (waits for one)."""
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        item, data = self.items.popleft()
        if isinstance(item, FeedFrame):
            self.frames -= 1
        elif isinstance(item, FeedJoints):
            self.joints -= 1
        return item, data


def _sequence(ws: WebSocket, name: str) -> int:
    value = ws.query_params.get(name, "0")
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else 0


def _ingest_worker(ws: WebSocket, intake: SessionIntake, session_id: str) -> PrincipalOf:
    """The session's worker if the credential is a valid ingest token of this session (else close 4401)."""
    secret = intake.settings.ingest_token_secret.get_secret_value().encode()

    async def worker_of(token: str | None) -> Principal | None:
        try:
            claims = verify_ingest_token(secret, token or "")
        except (TokenInvalidError, TokenExpiredError):
            claims = None
        if claims is None or claims.job_id != session_id:
            await ws.close(WS_UNAUTHORIZED, "A valid ingest token of this session is required.")
            return None
        return Principal(tenant=claims.tenant, key_id="ingest", job=session_id)

    return worker_of


async def session_feed(websocket: WebSocket, session_id: str) -> None:
    """Relay one session's feed to its remote worker until it disconnects."""
    intake: SessionIntake = websocket.app.state.session_intake
    try:
        record = await socket_session(websocket, intake, session_id, _ingest_worker(websocket, intake, session_id))
        if record is None:
            return
        relay = Relay(intake.settings.session_feed_buffer)
        start = FeedStart(_sequence(websocket, "after_frames"), _sequence(websocket, "after_joints"), record.created_at)
        robot = record.session.robot_id if record.session else None
        state = intake.state
        feed = NatsSessionFeed(state.js, state.settings.ns, record.tenant, session_id, robot, relay.put, start)
        await feed.start()
        sender = asyncio.create_task(_send(websocket, relay))
        try:
            if (await websocket.receive())["type"] != "websocket.disconnect":
                await websocket.close(WS_POLICY, "This socket takes no messages.")
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            await feed.stop()
    except WebSocketDisconnect:
        return


async def _send(ws: WebSocket, relay: Relay) -> None:
    """Send relayed items in order until cancelled."""
    while True:
        item, data = await relay.take()
        if isinstance(item, FeedFrame):
            await ws.send_bytes(encode_frame(item, data or b""))
        elif isinstance(item, FeedJoints | FeedControl | FeedBacklog):
            await ws.send_text(item.model_dump_json(exclude_none=True))
