"""The request layer both clients share, free of I/O: requests, the retry policy, and flows.

A flow is a generator that yields operations (:class:`Attempt` one HTTP exchange, :class:`Sleep`)
and gets their outcomes back; :class:`~gpurelay_client._client.Client` runs flows with blocking I/O
and :class:`~gpurelay_client._async_client.AsyncClient` with ``await``, so every verb's logic
(which requests, retries and backoff, parsing, errors) is written once and the twins cannot drift.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import quote

from pydantic import BaseModel

from gpurelay_client._errors import (
    APIConnectionError,
    APITimeoutError,
    GpurelayError,
    api_error,
    retry_after_seconds,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
"""Answers that mean "not now": retried (when the request may be) after ``Retry-After`` or a backoff."""
MAX_RETRY_AFTER_S = 60.0
"""A ``Retry-After`` longer than this (a daily quota, say) is not waited for: the error is raised."""
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class Body:
    """A request body read in chunks, from the start each time (so a retried PUT sends it whole again)."""

    def __init__(self, size: int, chunks: Callable[[], Iterator[bytes]]) -> None:
        self.size, self._chunks = size, chunks
        self.on_progress: Callable[[int, int], None] | None = None

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self._chunks():
            yield chunk
            sent += len(chunk)
            if self.on_progress is not None:
                self.on_progress(sent, self.size)


@dataclass(frozen=True)
class Request:
    """One HTTP request. ``url`` is a path under the base URL or an absolute (pre-signed) URL.

    ``retryable``: safe to send again (an idempotent method, a POST the API documents as
    idempotent, or one carrying an ``Idempotency-Key``). ``storage``: a pre-signed URL, sent without
    the API key.
    """

    method: str
    url: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | Body | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retryable: bool | None = None
    storage: bool = False

    @property
    def may_retry(self) -> bool:
        """Whether an answer of "not now", or a connection lost mid-way, may be followed by the same request."""
        if self.retryable is not None:
            return self.retryable
        return self.method in IDEMPOTENT_METHODS or any(k.lower() == "idempotency-key" for k in self.headers)


@dataclass(frozen=True)
class Reply:
    """A whole answer: status, headers (lower-case names) and body."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    reason: str = ""

    def json(self) -> Any:
        import json

        return json.loads(self.content) if self.content else None


@dataclass(frozen=True)
class Failure:
    """No answer: the transport failed. ``sent`` is False when the request surely never left (connect)."""

    error: Exception
    sent: bool
    timeout: bool = False


@dataclass(frozen=True)
class Attempt:
    """Operation: send ``request`` once; the outcome is a :class:`Reply` or a :class:`Failure`."""

    request: Request


@dataclass(frozen=True)
class Sleep:
    """Operation: wait ``seconds``."""

    seconds: float


Op = Attempt | Sleep
Flow = Generator[Op, Any, T]


def segment(value: str) -> str:
    """An id as one path segment: a ``/`` or ``..`` in it cannot reach another route."""
    return quote(value, safe="") if value not in ("", ".", "..") else quote(value, safe="").replace(".", "%2E")


def backoff_s(retry: int) -> float:
    """The pause before retry number ``retry`` (from 0): 0.5 s doubling to 8 s, with jitter."""
    return min(8.0, 0.5 * 2.0**retry) * (0.5 + random.random() / 2)


def retry_delay(request: Request, outcome: Reply | Failure, retry: int, max_retries: int) -> float | None:
    """How long to wait before sending ``request`` again after ``outcome``; ``None``: do not."""
    if retry >= max_retries:
        return None
    if isinstance(outcome, Failure):
        return backoff_s(retry) if request.may_retry or not outcome.sent else None
    if outcome.status not in RETRIED_STATUSES or not request.may_retry:
        return None
    after = retry_after_seconds(outcome.headers)
    if after is None:
        return backoff_s(retry)
    return after if after <= MAX_RETRY_AFTER_S else None


def send(request: Request, max_retries: int) -> Flow[Reply]:
    """Send ``request``, retrying as :func:`retry_delay` allows; a 2xx/3xx :class:`Reply` or an error."""
    retry = 0
    while True:
        outcome = yield Attempt(request)
        if isinstance(outcome, Reply) and outcome.status < 400:
            return outcome
        delay = retry_delay(request, outcome, retry, max_retries)
        if delay is None:
            if isinstance(outcome, Reply):
                raise api_error(outcome.status, outcome.headers, outcome.content, outcome.reason)
            kind = APITimeoutError if outcome.timeout else APIConnectionError
            raise kind(f"{request.method} {request.url}: {outcome.error!r}") from outcome.error
        yield Sleep(delay)
        retry += 1


def call(request: Request, model: type[M], max_retries: int) -> Flow[M]:
    """:func:`send`, then the answer's JSON as ``model``."""
    reply = yield from send(request, max_retries)
    return model.model_validate_json(reply.content)


def json_flow(
    method: str, path: str, params: Mapping[str, Any] | None, json: Any, headers: Mapping[str, str] | None, retries: int
) -> Flow[Any]:
    """Any route under the base URL (``path`` starts with ``/``): :func:`send`, then the answer's JSON
    (``None`` when it has no body). What the clients' ``request`` runs."""
    if not path.startswith("/"):
        raise GpurelayError(f"request() takes a path under the base URL (/v1/...), not {path!r}")
    request = Request(method.upper(), path, params=params, json=json, headers=dict(headers or {}))
    reply = yield from send(request, retries)
    return reply.json()


def step(flow: Flow[T], value: Any) -> tuple[Op | None, T | None]:
    """Advance ``flow`` with ``value``: its next operation, or ``None`` and its result when it ended."""
    try:
        return flow.send(value), None
    except StopIteration as stop:
        return None, stop.value


def run_sync(flow: Flow[T], do: Callable[[Op], Any]) -> T:
    """Run ``flow`` to its end, each operation through ``do`` (the blocking driver's one place)."""
    op, result = step(flow, None)
    while op is not None:
        op, result = step(flow, do(op))
    return cast(T, result)  # a flow may return None itself


async def run_async(flow: Flow[T], do: Callable[[Op], Awaitable[Any]]) -> T:
    """Run ``flow`` to its end, each operation awaited through ``do`` (the asyncio driver's one place)."""
    op, result = step(flow, None)
    while op is not None:
        op, result = step(flow, await do(op))
    return cast(T, result)  # a flow may return None itself
