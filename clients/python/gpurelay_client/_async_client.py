"""The asyncio client: :class:`AsyncClient` runs the shared flows (:mod:`gpurelay_client._core`) with httpx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from gpurelay_client._artifacts import ArtifactFile
from gpurelay_client._async_catalog import AsyncKinds, AsyncUsage
from gpurelay_client._async_jobs import AsyncJobs, AsyncUploads
from gpurelay_client._async_resources import AsyncRobots, AsyncSessions, AsyncTokens, AsyncWebhooks
from gpurelay_client._client import failure, reply
from gpurelay_client._core import (
    Attempt,
    Body,
    Failure,
    Flow,
    Op,
    Reply,
    Request,
    Sleep,
    json_flow,
    retry_delay,
    run_async,
)
from gpurelay_client._errors import APIConnectionError, APITimeoutError, api_error
from gpurelay_client._events import Event
from gpurelay_client._options import ClientOptions
from gpurelay_client._sse import EventFollower

T = TypeVar("T")


class AsyncClient:
    """An asyncio gpurelay client (``Client`` is its twin, with the same arguments and verbs)::

        async with AsyncClient("https://gpurelay.example", api_key="gr_...") as client:
            job = await client.jobs.run("lap_compare", inputs={"video": "lap.mp4"}, timeout=600)

    ``timeout`` bounds each request (seconds); ``max_retries`` the retries of one request (429/503 after
    ``Retry-After``, a lost connection after a backoff; a POST only when it carries an
    ``Idempotency-Key`` or is idempotent); ``stream_max_reconnects`` the reconnections of an event
    stream in a row without an event; ``stream_idle_timeout`` how long a stream may stay silent (the
    server's keep-alive comes every 15 s) before it is taken as cut and resumed. ``events_url``: where
    the SSE routes are, when not on ``base_url``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        events_url: str | None = None,
        stream_max_reconnects: int = 10,
        stream_idle_timeout: float = 60.0,
    ) -> None:
        self.options = ClientOptions.make(
            base_url, api_key, token, timeout, max_retries, events_url, stream_max_reconnects, stream_idle_timeout
        )
        self._http = httpx.AsyncClient(base_url=self.options.base_url, headers=self.options.headers(), timeout=timeout)
        self._storage = httpx.AsyncClient(timeout=httpx.Timeout(timeout, write=None))  # pre-signed URLs: no API key
        self.uploads = AsyncUploads(self)
        self.jobs = AsyncJobs(self)
        self.sessions = AsyncSessions(self)
        self.robots = AsyncRobots(self)
        self.tokens = AsyncTokens(self)
        self.webhooks = AsyncWebhooks(self)
        self.kinds = AsyncKinds(self)
        self.usage = AsyncUsage(self)

    async def close(self) -> None:
        """Close the connections."""
        await self._http.aclose()
        await self._storage.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Call a route this client has no verb for (an admin route such as ``/v1/cors``, a newer one), as
        the verbs call theirs: ``path`` under the base URL, with the credential, retried only when safe
        (an idempotent method, or a POST carrying an ``Idempotency-Key`` header). The answer's JSON
        (``None`` when it has no body); an error answer raises the typed :class:`APIError` with its
        problem document, as every verb does::

            origins = await client.request("PUT", "/v1/cors", json={"origins": ["https://app.example.com"]})
        """
        return await self._run(json_flow(method, path, params, json, headers, self.options.max_retries))

    # -- the driver ----------------------------------------------------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        return await run_async(flow, self._do)

    async def _do(self, op: Op) -> Any:
        if isinstance(op, Sleep):
            await asyncio.sleep(op.seconds)
            return None
        assert isinstance(op, Attempt)
        request = op.request
        client = self._storage if request.storage else self._http
        content: Any = request.content
        try:
            response = await client.request(
                request.method,
                request.url,
                params=request.params,
                json=request.json,
                content=chunks(content) if isinstance(content, Body) else content,
                headers=dict(request.headers),
            )
        except httpx.TransportError as exc:
            return failure(exc)
        return reply(response)

    async def _events(self, url: str, after: str | int | None, deadline: float | None = None) -> AsyncIterator[Event]:
        """Every event at ``url`` until the terminal one, resuming as :class:`EventFollower` says; by
        ``deadline`` (monotonic) at the latest, else :class:`APITimeoutError`."""
        follower = EventFollower(url, after, self.options.stream_max_reconnects)
        while True:
            request = follower.request()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise APITimeoutError(f"{url}: no terminal event in time")
            timeout = httpx.Timeout(self.options.timeout, read=self.options.stream_read_s(left))
            try:
                async with self._http.stream("GET", url, headers=dict(request.headers), timeout=timeout) as response:
                    if response.is_error:
                        await response.aread()
                        pause = follower.refused(reply(response))
                    else:
                        async for line in response.aiter_lines():
                            if (event := follower.feed(line)) is not None:
                                yield event
                            if follower.done:
                                return
                        pause = follower.ended()
            except httpx.TransportError:
                pause = follower.broken()
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(pause)

    async def _download(self, url: str, target: ArtifactFile) -> Path:
        """Stream ``url`` into ``target`` (started over on a retry) and check it."""
        retry = 0
        while True:
            outcome: Reply | Failure
            try:
                async with self._storage.stream("GET", url) as response:
                    if response.is_success:
                        async for chunk in response.aiter_bytes(1024 * 1024):
                            await asyncio.to_thread(target.write, chunk)
                        return await asyncio.to_thread(target.finish)
                    await response.aread()
                    outcome = reply(response)
            except httpx.TransportError as exc:
                outcome = failure(exc)
            delay = retry_delay(Request("GET", url), outcome, retry, self.options.max_retries)
            if delay is None:
                if isinstance(outcome, Reply):
                    raise api_error(outcome.status, outcome.headers, outcome.content, outcome.reason)
                raise APIConnectionError(f"GET {target.artifact.name}: {outcome.error!r}") from outcome.error
            target.restart()
            await asyncio.sleep(delay)
            retry += 1


async def chunks(body: Body) -> AsyncIterator[bytes]:
    """A body's chunks, each read off the event loop (a file read may block)."""
    iterator = iter(body)
    while (chunk := await asyncio.to_thread(next, iterator, None)) is not None:
        yield chunk
