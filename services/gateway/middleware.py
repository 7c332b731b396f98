"""Request body size limit (pure ASGI, so streaming routes are not buffered)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from services.common.http.problem import problem
from services.gateway.headers import decimal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLargeError(Exception):
    """Raised inside ``receive`` when a body passes the limit while streaming."""


class BodySizeLimitMiddleware:
    """413 for a body over ``max_bytes``, by Content-Length or while it streams.

    Paths under ``exempt_prefixes`` (the signed blob uploads, limited by their own signature) pass;
    paths matching a ``larger`` pattern (session frames) have that pattern's limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        exempt_prefixes: tuple[str, ...] = (),
        larger: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_prefixes = exempt_prefixes
        self.larger = tuple((re.compile(pattern), limit) for pattern, limit in larger)

    def limit_for(self, path: str) -> int:
        """The body limit of ``path``."""
        return next((limit for pattern, limit in self.larger if pattern.fullmatch(path)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(path)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (decimal(value) or 0) > max_bytes:
                await self._reject(scope, receive, send, max_bytes)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if not started:
                await self._reject(scope, receive, send, max_bytes)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        detail = f"The request body may not exceed {max_bytes} bytes."
        await problem(413, detail, title="Content Too Large")(scope, receive, send)
