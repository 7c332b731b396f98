"""Concurrent SSE streams per tenant: at most ``sse_max_streams_per_tenant`` in each notifier process.

One over the cap is a 429 before any consumer is made; a slot comes back when its response ends,
whether the stream ended, the client went away or it failed (:class:`SlotEventSource`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from services.common.http.problem import ProblemError
from services.common.observability.metrics import SSE_CONNECTIONS


class StreamSlots:
    """Open SSE streams per tenant, at most ``limit`` each."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit, self.retry_after_s = limit, retry_after_s
        self.open: dict[str, int] = {}

    def acquire(self, tenant: str) -> Callable[[], None]:
        """Take one of ``tenant``'s slots (a 429 when none is left); returns its (idempotent) release."""
        taken = self.open.get(tenant, 0)
        if taken >= self.limit:
            raise ProblemError(
                429,
                f"At most {self.limit} event streams may be open at once per tenant; close one or retry later.",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self.open[tenant] = taken + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                left = self.open[tenant] - 1
                if left:
                    self.open[tenant] = left
                else:
                    del self.open[tenant]

        return release


class SlotEventSource(EventSourceResponse):
    """An SSE response that gives its stream slot back when it ends, however it ends; it is counted in
    ``gpurelay_sse_connections`` while it runs."""

    def __init__(self, *args: Any, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        SSE_CONNECTIONS.inc()
        try:
            await super().__call__(scope, receive, send)
        finally:
            SSE_CONNECTIONS.dec()
            self.release()


def stream_slots(limit: int, retry_ms: int) -> StreamSlots:
    """The slots of one notifier; a refused client is told to retry after its SSE ``retry:`` hint."""
    return StreamSlots(limit, max(1, math.ceil(retry_ms / 1000)))
