"""The dashboard in tests: sign in with an API key over real HTTP, read a page's CSRF and API tokens,
check that every form control has a label, run the embedded stack beside a synchronous browser."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from contracts.streams import KV_APIKEYS
from contracts.subjects import Namespace
from services.cli.dev import DevStack
from services.common.auth.apikeys import ApiKeyStore
from tests.support.nats import connect_env

SESSION_COOKIE = "gpurelay_session"
T = TypeVar("T")


def hidden_value(html: str, name: str) -> str:
    """The value of the hidden input ``name`` in ``html``."""
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert match is not None, f"no hidden input {name!r}"
    return match.group(1)


def page_token(html: str) -> str:
    """The short-lived API token a signed-in page holds."""
    match = re.search(r'<meta name="gpurelay-token" content="([^"]+)">', html)
    assert match is not None, "the page holds no API token"
    return match.group(1)


async def sign_in(http: httpx.AsyncClient, key: str, next_path: str = "/jobs") -> httpx.Response:
    """Open the sign-in form and post ``key`` with its CSRF token; the (unfollowed) answer."""
    form = await http.get(f"/login?next={next_path}")
    assert form.status_code == 200, form.text
    data = {"api_key": key, "csrf": hidden_value(form.text, "csrf"), "next": next_path}
    return await http.post("/login", data=data)


def set_cookie_header(response: httpx.Response, name: str) -> str:
    """The ``Set-Cookie`` header that sets ``name``."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no Set-Cookie for {name}")


class _Controls(HTMLParser):
    """Form controls and what labels them."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self._label_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label":
            self._label_depth += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        elif tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append({**a, "_wrapped": "1" if self._label_depth else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label_depth -= 1


def unlabelled_controls(html: str) -> list[str]:
    """Form controls of ``html`` with no label (``for``, a wrapping label, or ``aria-label``)."""
    parser = _Controls()
    parser.feed(html)
    return [
        str(c.get("id") or c.get("name"))
        for c in parser.controls
        if not (c["_wrapped"] or c.get("aria-label") or (c.get("id") and c["id"] in parser.label_for))
    ]


class ThreadedStack:
    """A :class:`~services.cli.dev.DevStack` on its own event loop in a thread, for synchronous tests
    (Playwright's sync API cannot run inside an event loop); :meth:`call` runs a coroutine there."""

    def __init__(self, data_dir: Path) -> None:
        self.stack = DevStack(data_dir=data_dir, port=0)
        self.env: dict[str, str] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dashboard-stack", daemon=True)

    def start(self, timeout_s: float = 60.0) -> dict[str, str]:
        """Start the loop's thread and the stack on it; the stack's ``dev.env`` values."""
        self._thread.start()
        self.env = self.call(self.stack.start(), timeout_s)
        return self.env

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        """Run ``coro`` on the stack's loop and wait (bounded) for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def stop(self) -> None:
        """Stop the stack, then the loop and its thread."""
        try:
            self.call(self.stack.stop(), 60.0)
            self.call(_cancel_the_rest(), 10.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
            self._loop.close()

    async def key_for(self, tenant: str) -> str:
        """A new API key of ``tenant`` in the stack's key store."""
        nc = await connect_env(self.env)
        try:
            keys = ApiKeyStore(await nc.jetstream().key_value(Namespace("").bucket(KV_APIKEYS)))
            _, key = await keys.create(tenant)
            return key
        finally:
            await nc.close()


async def _cancel_the_rest() -> None:
    """Cancel and await what is left on the loop (connections the stack's clients left behind)."""
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


@contextmanager
def running_stack(folder: Path, routes_yaml: str, **env: str) -> Iterator[ThreadedStack]:
    """A started :class:`ThreadedStack` in ``folder`` routing by ``routes_yaml``, with ``env`` set while it
    starts and runs (the local pool's workers inherit it) and ``GPURELAY_API_KEY`` unset; stopped on exit."""
    (folder / "routes.yaml").write_text(routes_yaml)
    running = ThreadedStack(folder / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GPURELAY_ROUTE_TABLE", str(folder / "routes.yaml"))
        patch.delenv("GPURELAY_API_KEY", raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            running.start()
            yield running
        finally:
            running.stop()
