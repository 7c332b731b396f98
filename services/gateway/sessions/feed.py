"""``WS /v1/internal/sessions/{id}/feed``: a remote session worker's frames, joints and control.

A worker that cannot reach NATS (a Modal class) opens this socket with its job-scoped ingest token
(``Authorization: Bearer``, or a first ``{"auth": token}`` message); the gateway reads the session's
feed from JetStream (:class:`~services.common.session_feed.NatsSessionFeed`, the very reader a local
worker uses) and relays it: frames as binary messages, joints, control and the backlog mark as text
(:mod:`contracts.session_feed`). ``?after_frames=`` / ``?after_joints=`` (stream sequences) resume a
reconnecting worker after what it saw; ``?restored_until=`` (a resumed session's worker, its memory still
to come) says up to where its frames are restored ones. The relay
(:class:`~services.gateway.sessions.relay.Relay`) holds at most ``session_feed_buffer`` live frames for a
worker that falls behind (the oldest is dropped: the worker counts the gap in ``seq``), restored frames up
to ``session_feed_restored_bytes`` and a bounded number of joint samples. The socket takes no messages
from the worker: one closes it (1008).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket, WebSocketDisconnect

from contracts.session_feed import FeedBacklog, FeedControl, FeedFrame, FeedJoints, encode_frame
from services.common.auth.apikeys import Principal
from services.common.auth.ingest_tokens import verify_ingest_token
from services.common.auth.tokens import TokenExpiredError, TokenInvalidError
from services.common.session_feed import FeedStart, NatsSessionFeed
from services.gateway.sessions.http import PrincipalOf, socket_session
from services.gateway.sessions.intake import SessionIntake
from services.gateway.sessions.relay import Relay
from services.gateway.ws_auth import WS_POLICY, WS_UNAUTHORIZED

log = logging.getLogger(__name__)


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
        settings = intake.settings
        relay = Relay(
            settings.session_feed_buffer, _sequence(websocket, "restored_until"), settings.session_feed_restored_bytes
        )
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
