"""Who is on a WebSocket: an ``Authorization`` header, a scoped token as ``?token=`` (browsers cannot set
headers on a socket), or a first text message ``{"auth": "<credential>"}`` within a deadline. An API
key never goes in a URL (a ``?token=`` that is one is refused): URLs end up in logs and histories; a
short-lived scoped token may (and gpurelay's logs mask ``token=`` values).

:func:`ws_credential` returns the credential; the route decides what it may be (an API key or a scoped
token with the route's scope; for a worker's feed its ingest token).
"""

from __future__ import annotations

import asyncio

from fastapi import WebSocket, WebSocketDisconnect

from services.common.auth.tokens import looks_like_token
from services.gateway.ws_text import BadMessageError, json_object

WS_POLICY = 1008
WS_TOO_BIG = 1009
WS_UNAUTHORIZED = 4401
WS_FORBIDDEN = 4403
WS_NOT_FOUND = 4404
WS_INVALID_RECORD = 4409
AUTH_MAX_CHARS = 4096
"""The longest credential a first message may carry."""
AUTH_MESSAGE_MAX_CHARS = 2 * AUTH_MAX_CHARS


class NoCredentialInTimeError(Exception):
    """No first ``{"auth": ...}`` message arrived within the deadline."""


async def ws_credential(ws: WebSocket, timeout_s: float) -> str | None:
    """The bearer credential of an accepted socket, or ``None`` when what came is not one (a ``?token=`` that
    is not a token, a first message that is not a JSON object with a string ``auth``: binary, not JSON,
    too long, nested too deep).

    Raises :class:`NoCredentialInTimeError` when no first message arrives within ``timeout_s``.
    """
    header = ws.headers.get("authorization")
    if header is not None:
        scheme, _, credential = header.partition(" ")
        return credential.strip() or None if scheme.lower() == "bearer" else None
    query = ws.query_params.get("token")
    if query is not None:
        return query if looks_like_token(query) and len(query) <= AUTH_MAX_CHARS else None
    try:
        message = await asyncio.wait_for(ws.receive(), timeout_s)
    except TimeoutError:
        raise NoCredentialInTimeError from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    try:
        found = json_object(message.get("text"), AUTH_MESSAGE_MAX_CHARS).get("auth")
    except BadMessageError:
        return None
    return found if isinstance(found, str) and 0 < len(found) <= AUTH_MAX_CHARS else None
