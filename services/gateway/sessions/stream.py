"""``WS /v1/sessions/{id}/stream``: frames in, each acked at once; the session's own events out.

Auth: ``Authorization: Bearer <api key or token>``, ``?token=<token>``, or a first text message
``{"auth": "<api key or token>"}`` within ``robot_ws_auth_timeout_s`` (else 1008). A token needs
``sessions:write`` (of the session's kind and subject), or is the session's own stream token. A bad
credential closes 4401, one out of scope 4403, a session of another tenant or subject (or none) 4404,
one whose stored record does not validate 4409.

In: a binary message is one JPEG or PNG frame; a text ``{"type": "frame", "ts": <unix s>, "pose":
[16 numbers]?, "key": <idempotency key>?}`` just before it describes it (a frame sent again with its
key, after a dropped socket, is acked with the seq it was stored as). ``{"type": "stop"}`` and
``{"type": "reset"}`` control the session; ``{"type": "ping"}`` is answered ``{"type": "pong"}`` (a
client that heard nothing for a while asks, and takes a socket that stays silent as dropped: a host gone
without closing it sends no close). Out: ``{"type": "ack", "seq", "ts"}`` for each frame as
soon as it is stored (before any inference), ``{"type": "control", "action"}`` for each control,
``{"type": "event", "seq", "event"}`` for each of the session's events (progress, snapshots, results,
the terminal event; not heartbeats; ``seq`` is the JOBS stream sequence, ``?after=SEQ`` resumes after
it), and ``{"type": "error", "code", "message"}`` for a bad message, after which the socket stays open. A text message
is one JSON object of at most ``ws_max_message_bytes`` characters, plain JSON (no ``NaN`` or
``Infinity``, nesting bounded: :mod:`services.gateway.ws_text`). A message over
``session_frame_max_bytes`` closes it with 1009 (the server refuses it before reading it); the
socket closes with 1000 after the terminal event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError
from starlette.websockets import WebSocketState

from contracts.api.sessions import FrameMeta
from contracts.events.registry import TERMINAL_JOB_EVENTS
from contracts.job_record import JobRecord
from contracts.record_repair import INVALID_RECORD, UnreadableRecordError
from contracts.streams import JOBS
from services.common.auth.apikeys import Principal
from services.common.auth.key_cache import CredentialRefusedError
from services.common.auth.scoped import Scope, allows
from services.common.http.problem import ProblemError
from services.common.nats.connection import NATS_AWAY
from services.common.nats.kv import last_seq
from services.common.nats.quiet_watch import renew_on_reconnect
from services.gateway.sessions.http import PrincipalOf, image_type, socket_session
from services.gateway.sessions.intake import SessionIntake
from services.gateway.ws_auth import WS_FORBIDDEN, WS_UNAUTHORIZED
from services.gateway.ws_text import BadMessageError, json_object

log = logging.getLogger(__name__)
NO_META = FrameMeta(type="frame")
"""A frame sent without a description."""
ERROR_CODES = {404: "not_found", 409: "session_ended", 413: "frame_too_large", 422: "invalid", 429: "rate_limited"}


class _Socket:
    """One client's socket: sends are serialised; frames and control go through the intake."""

    def __init__(self, ws: WebSocket, intake: SessionIntake, record: JobRecord) -> None:
        self.ws, self.intake, self.record = ws, intake, record
        self.lock = asyncio.Lock()
        self.meta: FrameMeta | None = None

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message; once the socket closed (the session ended and the server closed it,
        or the client left) :class:`WebSocketDisconnect`, which ends the socket's loop quietly."""
        async with self.lock:
            if self.ws.application_state is WebSocketState.DISCONNECTED:
                raise WebSocketDisconnect(1000)
            try:
                await self.ws.send_text(json.dumps(message, separators=(",", ":")))
            except (RuntimeError, OSError) as exc:  # starlette's "send once a close was sent" is one
                raise WebSocketDisconnect(1006) from exc

    async def error(self, code: str, message: str) -> None:
        await self.send({"type": "error", "code": code, "message": message[:500]})

    async def receive(self) -> None:
        """Frames and control until the client leaves."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                if message.get("bytes") is not None:
                    await self._frame(message["bytes"])
                else:
                    await self._text(message.get("text") or "")
            except ProblemError as exc:
                await self.error(ERROR_CODES.get(exc.status, "unavailable"), exc.detail)
            except UnreadableRecordError:
                await self.error(INVALID_RECORD, "The session's stored record is not valid.")
            except NATS_AWAY:  # this frame or control only, as a 503 over HTTP; the socket is kept
                await self.error("unavailable", "The event log cannot answer right now; send it again.")

    async def _frame(self, data: bytes) -> None:
        meta, self.meta = self.meta, None
        if len(data) > self.intake.settings.session_frame_max_bytes:
            raise ProblemError(413, "The frame is too large.")
        content_type = image_type(data)
        record = await self.intake.record(self.record.tenant, self.record.id)
        meta = meta or NO_META
        accepted = await self.intake.accept_frame(record, data, content_type, meta.ts, meta.pose, meta.key)
        await self.send({"type": "ack", "seq": accepted.seq, "ts": meta.ts or time.time()})

    async def _text(self, text: str) -> None:
        try:
            message = json_object(text, self.intake.settings.ws_max_message_bytes)
        except BadMessageError as exc:
            await self.error("invalid", str(exc))
            return
        kind = message.get("type")
        if kind in ("stop", "reset"):
            record = await self.intake.record(self.record.tenant, self.record.id, fresh=True)
            await self.intake.control(record, kind)
            await self.send({"type": "control", "action": kind})
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "frame":
            try:
                self.meta = FrameMeta.model_validate(message)
            except ValidationError as exc:
                await self.error("invalid", str(exc.errors()[0]["msg"]))
        else:
            await self.error("invalid", "Send a binary frame or {'type': 'frame' | 'stop' | 'reset' | 'ping'}.")

    async def events(self, after: int) -> None:
        """The session's events (no heartbeats) until its terminal event; then close 1000."""
        state = self.intake.state
        subject = state.subjects.job_events(self.record.tenant, self.record.id)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=256)
        # From an explicit sequence, and nothing at or before it passed on (services.common.nats.kv: nats-py's
        # ordered consumer, made again before its first message, starts over at the stream's first).
        floor = after or await last_seq(state.js, state.settings.ns.stream(JOBS))
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=floor + 1)

        async def on_msg(msg: Any) -> None:
            await queue.put(msg)

        sub = await state.js.subscribe(
            subject, stream=state.settings.ns.stream(JOBS), cb=on_msg, ordered_consumer=True, config=config
        )
        renew_on_reconnect(sub)  # a restarted server lost its consumer: read on at once
        try:
            while True:
                msg = await queue.get()
                if msg.metadata.sequence.stream <= floor:
                    continue
                envelope = json.loads(msg.data)
                if envelope.get("type") == "job.heartbeat":
                    continue
                await self.send({"type": "event", "seq": msg.metadata.sequence.stream, "event": envelope})
                if envelope.get("type") in TERMINAL_JOB_EVENTS:
                    await self.ws.close(1000)
                    return
        finally:
            await sub.unsubscribe()


def _caller(ws: WebSocket, intake: SessionIntake, session_id: str) -> PrincipalOf:
    """A credential's principal: an API key, a token with ``sessions:write``, or the session's own stream
    token (``events:read`` bound to it); else the socket is closed (4401 refused, 4403 not in scope)."""

    async def principal_of(credential: str | None) -> Principal | None:
        try:
            principal = await intake.state.key_cache.authenticate(credential or "")
        except CredentialRefusedError as exc:
            await ws.close(WS_UNAUTHORIZED, str(exc)[:120])
            return None
        own_stream = principal.job == session_id and allows(principal, Scope.EVENTS_READ)
        if not (allows(principal, Scope.SESSIONS_WRITE) or own_stream):
            await ws.close(WS_FORBIDDEN, "The token lacks sessions:write.")
            return None
        return principal

    return principal_of


def _closed_on_failure(task: asyncio.Task[None], ws: WebSocket) -> None:
    """The events of a socket could not be read (NATS): log it and close the socket (1011)."""
    if task.cancelled() or task.exception() is None or isinstance(task.exception(), WebSocketDisconnect):
        return
    log.warning("session events stopped", exc_info=task.exception())
    asyncio.get_running_loop().create_task(_close_quietly(ws, 1011, "The session's events could not be read."))


async def _close_quietly(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await ws.close(code, reason)


async def session_stream(websocket: WebSocket, session_id: str) -> None:
    """A live session's bidirectional stream (see the module docstring)."""
    intake: SessionIntake = websocket.app.state.session_intake
    try:
        record = await socket_session(websocket, intake, session_id, _caller(websocket, intake, session_id))
        if record is None:
            return
        after = websocket.query_params.get("after", "0")
        socket = _Socket(websocket, intake, record)
        valid = after.isascii() and after.isdigit() and len(after) <= 18
        events = asyncio.create_task(socket.events(int(after) if valid else 0))
        events.add_done_callback(lambda task: _closed_on_failure(task, websocket))
        try:
            await socket.receive()
        finally:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await events
    except WebSocketDisconnect:
        return
