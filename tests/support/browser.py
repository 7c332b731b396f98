"""Debian's Chromium for the browser tests, through Playwright (never ``playwright install``).

Where ``/usr/bin/chromium`` (``GPURELAY_CHROMIUM``) is missing the browser tests skip saying so
(``make test`` installs it when run as root), but fail with ``GPURELAY_REQUIRE_BROWSER=1`` (``.ci/run``,
which installs it). Its home and caches live under ``.gpurelay-test/``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_DATA = ROOT / ".gpurelay-test"
CHROMIUM = Path(os.environ.get("GPURELAY_CHROMIUM", "/usr/bin/chromium"))
RECORD_PROGRESS = """(() => {
  const d = Object.getOwnPropertyDescriptor(HTMLProgressElement.prototype, "value");
  Object.defineProperty(HTMLProgressElement.prototype, "value", {
    configurable: true,
    get() { return d.get.call(this); },
    set(v) {
      d.set.call(this, v);
      if (!this.id) return;
      const key = "progress:" + this.id;
      const seen = JSON.parse(sessionStorage.getItem(key) || "[]");
      seen.push(Number(v));
      sessionStorage.setItem(key, JSON.stringify(seen.slice(-500)));
    },
  });
})();"""
"""Every value a script gives a ``<progress>`` (by id), kept in sessionStorage across navigations."""


def require_chromium() -> None:
    """Skip (or, on CI, fail) the calling test when Debian's Chromium is not installed."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium (make test does, as root)"
        if os.environ.get("GPURELAY_REQUIRE_BROWSER") == "1":  # CI (.ci/run): the browser tests must run
            pytest.fail(reason)
        pytest.skip(reason)


def launch_chromium(browser_type: Any, *args: str) -> Any:
    """Debian's Chromium launched by a Playwright ``browser_type`` (``playwright.chromium``, or a running
    browser's ``browser_type``: one Playwright per thread), WebGL on SwiftShader, with the extra
    command-line ``args`` (a fake camera, say). The caller closes it."""
    home = TEST_DATA / "browser-home"
    env: dict[str, str | float | bool] = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    switches = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", *args]
    return browser_type.launch(executable_path=str(CHROMIUM), args=switches, env=env)


@contextmanager
def launched_chromium() -> Iterator[Any]:
    """Debian's Chromium through Playwright's sync API (:func:`launch_chromium`); closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright.chromium)
        try:
            yield browser
        finally:
            browser.close()


SCAN_PAGE = """() => {
  const seen = [document.documentElement.outerHTML, document.cookie, JSON.stringify(localStorage),
                JSON.stringify(sessionStorage), JSON.stringify(performance.getEntries().map((e) => e.name))];
  for (const name of Object.getOwnPropertyNames(window)) {
    try {
      const v = window[name];
      if (typeof v === "string" || (v && typeof v === "object")) seen.push(JSON.stringify(v) || "");
    } catch (e) { /* a cross-origin or cyclic value: not the page's own data */ }
  }
  return seen.join("\\n");
}"""
"""A page's own data as text: its DOM, cookies, storage, resource URLs and the globals it set."""


def request_text(request: Any) -> str:
    """A request as text: method, URL, headers and body."""
    data = request.post_data_buffer
    body = data.decode("latin-1") if data else ""
    return f"{request.method} {request.url} {json.dumps(request.headers)} {body}"


def response_text(response: Any) -> str:
    """A response as text: its URL, headers and (for text, JSON and scripts) body."""
    kind = response.headers.get("content-type", "")
    body = ""
    if kind.startswith(("application/json", "text/", "application/problem+json", "application/javascript")):
        try:
            body = response.text()
        except Exception:  # noqa: BLE001 - a body the browser did not keep (a redirect, an aborted read)
            body = ""
    return f"{response.status} {response.url} {json.dumps(response.headers)} {body}"


def browser_timeout(seconds: float) -> pytest.MarkDecorator:
    """pytest-timeout for a test that drives Chromium: from a thread, which dumps every stack and ends the
    worker (a crash the suite reports), since SIGALRM did not interrupt Playwright's sync API: in a
    fresh-clone run a page test hung for over 30 minutes, past its 240 s, with Chromium spinning."""
    return pytest.mark.timeout(seconds, method="thread")


def record_traffic(page: Any, into: list[str]) -> None:
    """Append every request ``page`` sends and every response it gets to ``into``, as text; and every
    WebSocket it opens (``WS <url>``) with the text messages it sends and gets on it."""
    page.on("request", lambda r: into.append(request_text(r)))
    page.on("response", lambda r: into.append(response_text(r)))
    page.on("websocket", lambda ws: _record_socket(ws, into))


def _record_socket(ws: Any, into: list[str]) -> None:
    into.append(f"WS {ws.url}")
    ws.on("framesent", lambda payload: into.append(f"WS> {payload}") if isinstance(payload, str) else None)
    ws.on("framereceived", lambda payload: into.append(f"WS< {payload}") if isinstance(payload, str) else None)


def key_secret(api_key: str) -> str:
    """The secret part of an API key ``gr_<key id>_<secret>`` (the secret may itself contain ``_``)."""
    return api_key.split("_", 2)[2]
