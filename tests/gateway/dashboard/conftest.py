"""Fixtures of the dashboard's browser tests: one embedded stack and one Chromium per module.

The browser is Debian's ``chromium`` (:mod:`tests.support.browser`). Every page a test opens records console errors
and uncaught exceptions; a test ends by asserting there were none (but those it declares expected).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.browser import RECORD_PROGRESS, TEST_DATA, launched_chromium, require_chromium
from tests.support.dashboard import ThreadedStack, running_stack

ROOT = Path(__file__).resolve().parents[3]
ECHO_ROUTE = {
    "backend": "local",
    "local": "bench.harness.session_echo:run",
    "function": "vlm",
    "timeout_s": 120,
    "retries": {"max_attempts": 1},
    "concurrency": 1,
}
"""The vlm route of the module's stack: the session echo workload answers each frame (no model)."""
SCREENSHOTS = TEST_DATA / "screenshots"


@dataclass
class Browsing:
    """A page, the console errors it logged, and the stack's base URL."""

    page: Any
    base_url: str
    errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """``status url`` of every response of 400 or more (what a console error names no URL of)."""

    def expect_no_errors(self, *allowed: str) -> None:
        """No console error or uncaught exception but those containing one of ``allowed``."""
        unexpected = [e for e in self.errors if not any(a in e for a in allowed)]
        assert unexpected == [], (unexpected, self.refused)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedStack]:
    """The embedded stack (``gpurelay dev``: gateway with notifier, dispatcher, local pool, NATS), its workers
    sending every progress report: a bar's moves are what the pages show, however fast a job runs here."""
    require_chromium()
    folder = tmp_path_factory.mktemp("dashboard")
    table = yaml.safe_load((ROOT / "deploy" / "routes.yaml").read_text())
    table["profiles"]["dev"]["vlm"] = ECHO_ROUTE  # VLM answers without a model: the echo workload's
    with running_stack(folder, yaml.safe_dump(table), GPURELAY_PROGRESS_MIN_INTERVAL_S="0") as running:
        yield running


@pytest.fixture(scope="module")
def chromium(stack: ThreadedStack) -> Iterator[Any]:
    """Debian's Chromium through Playwright, WebGL on SwiftShader."""
    with launched_chromium() as browser:
        yield browser


def _open(chromium: Any, base_url: str, **context_options: Any) -> Iterator[Browsing]:
    context = chromium.new_context(base_url=base_url, **context_options)
    context.add_init_script(RECORD_PROGRESS)
    context.set_default_timeout(20_000)
    page = context.new_page()
    browsing = Browsing(page, base_url)
    page.on("console", lambda m: browsing.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: browsing.errors.append(f"pageerror: {e}"))
    page.on("response", lambda r: browsing.refused.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        yield browsing
    finally:
        context.close()


@pytest.fixture
def browsing(chromium: Any, stack: ThreadedStack) -> Iterator[Browsing]:
    """A fresh browser context (no cookies) and page at desktop width."""
    yield from _open(chromium, stack.env["GPURELAY_URL"], viewport={"width": 1280, "height": 900})


@pytest.fixture
def phone(chromium: Any, stack: ThreadedStack) -> Iterator[Browsing]:
    """A fresh browser context and page at a phone's width."""
    yield from _open(chromium, stack.env["GPURELAY_URL"], viewport={"width": 390, "height": 844}, is_mobile=True)
