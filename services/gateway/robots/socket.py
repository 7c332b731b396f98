"""``WS /v1/robots/{robot_id}/joints/ws``: one JSON sample per text message, periodic acks.

Auth: ``Authorization: Bearer <key>``, or (browsers cannot set WebSocket headers) a first message
``{"auth": "<key>"}`` within ``robot_ws_auth_timeout_s``. Keys are not taken in the URL, where
access logs and proxies would keep them. The socket is accepted first so that a refusal can carry
its code: 4401 unauthorized, 4429 a new robot of a tenant at ``robot_max_per_tenant``, 1008 policy
(no key in time, a bad robot id, a binary message), 1009 a message over ``ws_max_message_bytes``
(the server refuses such a frame before reading it; the route checks too, whatever server runs
it), 1011 NATS down. Invalid samples are answered with a
:class:`~contracts.api.robots.JointsWsError` naming the field, and the socket stays open.

Acks (:class:`~contracts.api.robots.JointsWsAck`, running totals) go out after every
``robot_ws_ack_every`` messages or ``robot_ws_ack_ms``, whichever first, and on ``{"type":
"close"}``, after which the server closes with 1000. A message-driven ack follows the JetStream ack
of its sample (which vouches for every earlier one); an idle or final ack follows a NATS flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from contracts.api.robots import (
    FieldError,
    JointEventEncoder,
    JointSampleIn,
    JointsWsControl,
    JointsWsError,
)
from contracts.ids import ID_PATTERN, tenant_key
from services.common.auth.apikeys import Principal
from services.common.auth.scoped import Scope, allows, robot_refusal
from services.common.http.problem import field_error
from services.gateway.robots.ingest import (
    MAX_FIELD_ERRORS,
    Telemetry,
    TelemetryUnavailableError,
    count_errors,
    receipt_time,
)
from services.gateway.robots.registry import RobotLimitError
from services.gateway.ws_auth import (
    WS_FORBIDDEN,
    WS_POLICY,
    WS_TOO_BIG,
    WS_UNAUTHORIZED,
    NoCredentialInTimeError,
    ws_credential,
)

log = logging.getLogger(__name__)
WS_TOO_MANY_ROBOTS = 4429


class _JointStream:
    """One WebSocket's samples: validate, publish, count, and ack every K messages or T ms."""

    def __init__(self, ws: WebSocket, telemetry: Telemetry, tenant: str, robot_id: str) -> None:
        settings = telemetry.settings
        self.ws, self.telemetry = ws, telemetry
        self.encoder = JointEventEncoder(tenant, robot_id)
        self.subject = telemetry.state.subjects.robot_joints(tenant, robot_id)
        self.key = tenant_key(tenant, robot_id)
        self.joint_count = settings.robot_joint_count
        self.ack_every, self.ack_s = settings.robot_ws_ack_every, settings.robot_ws_ack_ms / 1000
        self.max_chars = settings.ws_max_message_bytes
        self.accepted = self.rejected = 0
        self.acked = (0, 0)
        self.clock = asyncio.get_running_loop().time
        self.last_ack = self.clock()
        self.send_lock = asyncio.Lock()

    async def run(self) -> None:
        """Serve messages until the client leaves or asks to close."""
        ticker = asyncio.create_task(self._tick())
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:
                    await self.ws.close(WS_POLICY, "Send one JSON sample per text message.")
                    return
                if len(text) > self.max_chars:
                    await self.ws.close(WS_TOO_BIG, f"A message may not exceed {self.max_chars} bytes.")
                    return
                if not await self._handle(text):
                    return
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _handle(self, text: str) -> bool:
        index = self.accepted + self.rejected
        try:
            sample = JointSampleIn.model_validate_json(text)
        except ValidationError as exc:
            if _is_close(text):
                await self.telemetry.confirm()
                await self._ack((self.accepted, self.rejected), force=True)
                await self.ws.close(1000)
                return False
            errors = [field_error(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
            await self._reject(index, "The sample is not valid.", errors[:MAX_FIELD_ERRORS])
            return True
        if len(sample.joint_angles) != self.joint_count:
            errors = count_errors([sample], self.joint_count, (), indexed=False)
            await self._reject(index, "The sample has the wrong number of joint angles.", errors)
            return True
        received = receipt_time()
        data = self.encoder.data(sample, received)
        self.accepted += 1
        due = index + 1 - sum(self.acked) >= self.ack_every or self.clock() - self.last_ack >= self.ack_s
        await self.telemetry.publish(self.subject, (self.encoder.envelope(data, received),), confirm=due)
        await self.telemetry.remember(self.key, data)
        if due:
            await self._ack((self.accepted, self.rejected))
        return True

    async def _reject(self, index: int, detail: str, errors: list[dict[str, object]]) -> None:
        self.rejected += 1
        error = JointsWsError(index=index, detail=detail, errors=[FieldError.model_validate(e) for e in errors])
        async with self.send_lock:
            await self.ws.send_text(error.model_dump_json())

    async def _ack(self, counts: tuple[int, int], *, force: bool = False) -> None:
        """Send ``counts`` unless an ack at least as recent went out already."""
        async with self.send_lock:
            if counts[0] < self.acked[0] or counts[1] < self.acked[1] or (counts == self.acked and not force):
                return
            self.acked, self.last_ack = counts, self.clock()
            await self.ws.send_text(f'{{"type":"ack","accepted":{counts[0]},"rejected":{counts[1]}}}')

    async def _tick(self) -> None:
        """Ack what arrived since the last ack once ``ack_s`` passes without a message-driven one."""
        try:
            while True:
                await asyncio.sleep(self.ack_s)
                counts = (self.accepted, self.rejected)
                if counts != self.acked and self.clock() - self.last_ack >= self.ack_s:
                    await self.telemetry.confirm()
                    await self._ack(counts)
        except Exception:  # the socket went away or NATS failed: the receive loop reports it
            log.debug("joint stream ticker stopped", exc_info=True)


def _is_close(text: str) -> bool:
    try:
        JointsWsControl.model_validate_json(text)
    except ValidationError:
        return False
    return True


async def _ws_principal(ws: WebSocket, telemetry: Telemetry) -> Principal | None:
    """The caller of an accepted WebSocket: ``Authorization: Bearer``, ``?token=`` or a first ``{"auth": ...}``.

    Raises :class:`NoCredentialInTimeError` when no first message arrives within the deadline.
    """
    key = await ws_credential(ws, telemetry.settings.robot_ws_auth_timeout_s)
    return None if key is None else await telemetry.principal(key)


async def _admitted(ws: WebSocket, telemetry: Telemetry, robot_id: str) -> Principal | None:
    """The caller, authenticated, its robot id valid and admitted; else ``None``, the socket closed with why."""
    try:
        principal = await _ws_principal(ws, telemetry)
    except NoCredentialInTimeError:
        await ws.close(WS_POLICY, f"No auth message within {telemetry.settings.robot_ws_auth_timeout_s:g} s.")
        return None
    if principal is None:
        await ws.close(WS_UNAUTHORIZED, "A valid API key or token is required.")
        return None
    if not allows(principal, Scope.ROBOTS_WRITE) or robot_refusal(principal, robot_id) is not None:
        await ws.close(WS_FORBIDDEN, "The token lacks robots:write for this robot.")
        return None
    if not ID_PATTERN.fullmatch(robot_id):
        await ws.close(WS_POLICY, "robot_id must be 1-64 letters, digits, '_' or '-'.")
        return None
    try:
        await telemetry.admit(principal.tenant, robot_id)
    except RobotLimitError as exc:
        await ws.close(WS_TOO_MANY_ROBOTS, str(exc)[:120])  # a close reason is at most 123 bytes
        return None
    except (nats.errors.Error, TimeoutError):
        await ws.close(1011, "NATS did not answer; retry.")
        return None
    return principal


async def joints_ws(websocket: WebSocket, robot_id: str) -> None:
    """Stream joint angles: one JSON sample per text message; acks and errors come back."""
    await websocket.accept()
    try:
        telemetry: Telemetry = websocket.app.state.robot_telemetry
        principal = await _admitted(websocket, telemetry, robot_id)
        if principal is None:
            return
        stream = _JointStream(websocket, telemetry, principal.tenant, robot_id)
        try:
            await stream.run()
        except TelemetryUnavailableError as exc:
            index = stream.accepted + stream.rejected
            error = JointsWsError(index=index, detail=f"Not published: {exc}")
            await websocket.send_text(error.model_dump_json())
            await websocket.close(1011, "Telemetry could not be published.")
    except WebSocketDisconnect:
        return
