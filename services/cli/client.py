"""The CLI's HTTP side: a small gateway client, problem+json errors, and a resumable SSE follower.

Settings come from ``GPURELAY_*`` or ``<data dir>/dev.env`` (``GPURELAY_URL``, ``GPURELAY_API_KEY``,
``GPURELAY_EVENTS_URL``). Every error the gateway answers is an RFC 9457 problem; :class:`ApiError`
carries it and :func:`run` prints it and exits 1, so commands only write the happy path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import typer
from rich.console import Console

from services.common.config import BaseServiceSettings, load_settings

T = TypeVar("T")
err_console = Console(stderr=True)
TERMINAL_EVENTS = frozenset({"job.succeeded", "job.failed", "job.canceled"})


class ApiError(Exception):
    """An error answer of the gateway (a problem document when it sent one)."""

    def __init__(self, status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail, self.errors = status, title, detail, errors or []

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """Read a problem+json body, or fall back to the status line and the text."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "status" in body:
            return cls(int(body["status"]), str(body.get("title", "")), str(body.get("detail", "")), body.get("errors"))
        return cls(response.status_code, response.reason_phrase, response.text[:500])

    def show(self, console: Console = err_console) -> None:
        """Print the problem: status, title, detail and each field error."""
        console.print(f"[bold red]error {self.status}[/] {self.title}: {self.detail}")
        for e in self.errors:
            loc = ".".join(str(part) for part in e.get("loc", []))
            console.print(f"  [red]•[/] {loc}: {e.get('msg', '')}")


def cli_settings(data_dir: Path | None) -> BaseServiceSettings:
    """The CLI's settings (environment first, then ``<data dir>/dev.env``)."""
    return load_settings(BaseServiceSettings, data_dir)


class Client:
    """An async client of the gateway that sends the API key and raises :class:`ApiError`."""

    def __init__(self, settings: BaseServiceSettings, timeout_s: float = 30.0) -> None:
        if settings.api_key is None or not settings.api_key.get_secret_value():
            err_console.print("[red]no API key[/]: set GPURELAY_API_KEY or run `gpurelay dev` (writes dev.env)")
            raise typer.Exit(2)
        self.settings = settings
        self.headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
        self.http = httpx.AsyncClient(base_url=settings.url.rstrip("/"), headers=self.headers, timeout=timeout_s)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; the JSON body of a 2xx answer, else :class:`ApiError`."""
        response = await self.http.request(method, path, **kwargs)
        if response.is_error:
            raise ApiError.from_response(response)
        return response.json() if response.content else None

    def events_url(self, job_id: str) -> str:
        """The job's SSE URL: ``{events_url or url}/v1/jobs/{id}/events``."""
        base = (self.settings.events_url or self.settings.url).rstrip("/")
        return f"{base}/v1/jobs/{job_id}/events"


@dataclass
class SseEvent:
    """One Server-Sent Event: ``id`` (the stream sequence), ``event`` (the type), ``data``."""

    id: str | None = None
    event: str = "message"
    data: str = ""

    def json(self) -> dict[str, Any]:
        """``data`` parsed as JSON (the event envelope); ``{}`` when it is not an object."""
        try:
            value = json.loads(self.data)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


RETRIED_STATUSES = frozenset({429, 502, 503, 504})
"""Answers that mean "not now": an event stream is asked for again after a pause."""


@dataclass
class _Parser:
    """The SSE line protocol (WHATWG): fields until a blank line; ``:`` starts a comment."""

    data: list[str] = field(default_factory=list)
    event: str = ""
    id: str | None = None
    retry_ms: int | None = None

    def feed(self, line: str) -> SseEvent | None:
        if not line:
            if not self.data:
                self.event = ""
                return None
            out = SseEvent(self.id, self.event or "message", "\n".join(self.data))
            self.data, self.event = [], ""
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.event = value
        elif name == "id" and "\0" not in value:
            self.id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None


async def follow_events(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    *,
    last_event_id: str | None = None,
    max_retries: int = 10,
    retry_s: float = 0.5,
) -> AsyncIterator[SseEvent]:
    """Every event of a job's stream until its terminal event, resuming with ``Last-Event-ID``.

    A dropped connection, a stream that ends before the terminal event, or an answer that says
    "not now" (429, 502, 503, 504: a notifier restarting, NATS away for a moment) is retried after
    ``retry_s`` (or the server's ``retry:`` hint or ``Retry-After``, capped at 5 s); ``max_retries``
    failures in a row with no event in between raise the last error. Other errors raise at once.
    """
    failures = 0
    while True:
        parser = _Parser(id=last_event_id)
        sent = {**headers, "Accept": "text/event-stream"}
        if last_event_id is not None:
            sent["Last-Event-ID"] = last_event_id
        wait_s = retry_s
        try:
            async with http.stream("GET", url, headers=sent, timeout=httpx.Timeout(30.0, read=None)) as response:
                if response.is_error:
                    await response.aread()
                    if response.status_code not in RETRIED_STATUSES or failures >= max_retries:
                        raise ApiError.from_response(response)
                    wait_s = _retry_after(response, retry_s)
                else:
                    async for line in response.aiter_lines():
                        event = parser.feed(line.rstrip("\r"))
                        if event is None:
                            continue
                        failures, last_event_id = 0, parser.id
                        yield event
                        if event.event in TERMINAL_EVENTS:
                            return
        except (httpx.TransportError, httpx.StreamError) as exc:
            failures += 1
            if failures > max_retries:
                raise ApiError(0, "stream lost", f"{url}: {exc}") from exc
        else:
            failures += 1
            if failures > max_retries:
                raise ApiError(0, "stream ended", f"{url} closed {max_retries} times before the job ended")
        last_event_id = parser.id
        await asyncio.sleep(min(parser.retry_ms / 1000, 5.0) if parser.retry_ms is not None else wait_s)


def _retry_after(response: httpx.Response, default_s: float) -> float:
    """The answer's ``Retry-After`` in seconds (capped at 5), else ``default_s``."""
    value = response.headers.get("Retry-After", "")
    return min(float(value), 5.0) if value.isdigit() else default_s


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; gateway errors are printed and exit 1, unreachable hosts too."""
    try:
        return asyncio.run(make())
    except ApiError as exc:
        exc.show()
        raise typer.Exit(1) from None
    except httpx.TransportError as exc:
        err_console.print(f"[bold red]cannot reach the gateway[/]: {exc!r}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("interrupted (a submitted job keeps running: `gpurelay jobs show ID`)")
        raise typer.Exit(130) from None
