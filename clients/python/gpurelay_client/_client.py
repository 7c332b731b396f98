"""The blocking client: :class:`Client` runs the shared flows (:mod:`gpurelay_client._core`) with httpx."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from gpurelay_client._artifacts import ArtifactFile
from gpurelay_client._core import Attempt, Failure, Flow, Op, Reply, Request, Sleep, json_flow, retry_delay, run_sync
from gpurelay_client._errors import APIConnectionError, APITimeoutError, api_error
from gpurelay_client._events import Event
from gpurelay_client._options import ClientOptions
from gpurelay_client._sse import EventFollower
from gpurelay_client._sync_catalog import Kinds, Usage
from gpurelay_client._sync_jobs import Jobs, Uploads
from gpurelay_client._sync_resources import Robots, Sessions, Tokens, Webhooks

T = TypeVar("T")


def failure(exc: httpx.TransportError) -> Failure:
    """A transport error as the flows see it (a connect failure means nothing was sent)."""
    unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return Failure(exc, sent=not unsent, timeout=isinstance(exc, httpx.TimeoutException))


def reply(response: httpx.Response) -> Reply:
    """A read answer as the flows see it."""
    headers = {k.lower(): v for k, v in response.headers.items()}
    return Reply(response.status_code, headers, response.content, response.reason_phrase)


class Client:
    """A blocking gpurelay client (``AsyncClient`` is its twin)::

        with Client("https://gpurelay.example", api_key="gr_...") as client:
            job = client.jobs.run("lap_compare", inputs={"video": "lap.mp4"}, timeout=600)

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
        self._http = httpx.Client(base_url=self.options.base_url, headers=self.options.headers(), timeout=timeout)
        self._storage = httpx.Client(timeout=httpx.Timeout(timeout, write=None))  # pre-signed URLs: no API key
        self.uploads = Uploads(self)
        self.jobs = Jobs(self)
        self.sessions = Sessions(self)
        self.robots = Robots(self)
        self.tokens = Tokens(self)
        self.webhooks = Webhooks(self)
        self.kinds = Kinds(self)
        self.usage = Usage(self)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()
        self._storage.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def request(
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

            origins = client.request("PUT", "/v1/cors", json={"origins": ["https://app.example.com"]})
        """
        return self._run(json_flow(method, path, params, json, headers, self.options.max_retries))

    # -- the driver ----------------------------------------------------------------------------

    def _run(self, flow: Flow[T]) -> T:
        return run_sync(flow, self._do)

    def _do(self, op: Op) -> Any:
        if isinstance(op, Sleep):
            time.sleep(op.seconds)
            return None
        assert isinstance(op, Attempt)
        request = op.request
        client = self._storage if request.storage else self._http
        content: Any = request.content
        try:
            response = client.request(
                request.method,
                request.url,
                params=request.params,
                json=request.json,
                content=iter(content) if content is not None and not isinstance(content, bytes) else content,
                headers=dict(request.headers),
            )
        except httpx.TransportError as exc:
            return failure(exc)
        return reply(response)

    def _events(self, url: str, after: str | int | None, deadline: float | None = None) -> Iterator[Event]:
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
                with self._http.stream("GET", url, headers=dict(request.headers), timeout=timeout) as response:
                    if response.is_error:
                        response.read()
                        pause = follower.refused(reply(response))
                    else:
                        for line in response.iter_lines():
                            if (event := follower.feed(line)) is not None:
                                yield event
                            if follower.done:
                                return
                        pause = follower.ended()
            except httpx.TransportError:
                pause = follower.broken()
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)

    def _download(self, url: str, target: ArtifactFile) -> Path:
        """Stream ``url`` into ``target`` (started over on a retry) and check it."""
        retry = 0
        while True:
            outcome: Reply | Failure
            try:
                with self._storage.stream("GET", url) as response:
                    if response.is_success:
                        for chunk in response.iter_bytes(1024 * 1024):
                            target.write(chunk)
                        return target.finish()
                    response.read()
                    outcome = reply(response)
            except httpx.TransportError as exc:
                outcome = failure(exc)
            delay = retry_delay(Request("GET", url), outcome, retry, self.options.max_retries)
            if delay is None:
                if isinstance(outcome, Reply):
                    raise api_error(outcome.status, outcome.headers, outcome.content, outcome.reason)
                raise APIConnectionError(f"GET {target.artifact.name}: {outcome.error!r}") from outcome.error
            target.restart()
            time.sleep(delay)
            retry += 1
