"""The web examples in tests: their app server (``examples/app_server.py``) in a child process that dies
with the test, the gateway told to allow its origin, and the page open in Chromium, watched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.common.processes import preexec_die_with_parent
from tests.support.browser import RECORD_PROGRESS, SCAN_PAGE, key_secret, record_traffic

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def built_site(example: str) -> Path:
    """The example's built front end (``make examples`` builds it with vite from its lockfile)."""
    site = EXAMPLES / example / "dist"
    assert (site / "index.html").is_file(), f"{site} is not built: run `make examples`"
    return site


@contextmanager
def running_app_server(example: str, gateway_url: str, api_key: str) -> Iterator[str]:
    """``examples/app_server.py example`` on a free port with the API key in its environment; its origin."""
    built_site(example)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
    env |= {"GPURELAY_URL": gateway_url, "GPURELAY_API_KEY": api_key, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "app_server.py"), example, "--port", "0"],
        env=env, stdout=subprocess.PIPE, text=True,
        preexec_fn=preexec_die_with_parent(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "serving <example> on http://127.0.0.1:<port>", or EOF if it died
        assert line.startswith("serving "), f"the app server did not start: {line!r}"
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.kill()
        proc.wait(10)


def allow_origin(gateway_url: str, api_key: str, origin: str) -> None:
    """Add ``origin`` to the tenant's allowed browser origins (``/v1/cors``)."""
    auth = {"Authorization": f"Bearer {api_key}"}
    now = httpx.get(f"{gateway_url}/v1/cors", headers=auth, timeout=30)
    assert now.status_code == 200, now.text
    origins = sorted({*now.json()["origins"], origin})
    put = httpx.put(f"{gateway_url}/v1/cors", json={"origins": origins}, headers=auth, timeout=30)
    assert put.status_code == 200, put.text


@dataclass
class ExamplePage:
    """An example's page open in a fresh browser context: what it sent and got, and its errors."""

    example: str
    origin: str
    context: Any
    page: Any
    traffic: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def progress(self, bar: str) -> list[float]:
        """Every value the page's scripts gave ``<progress id=bar>``."""
        script = f"JSON.parse(sessionStorage.getItem('progress:{bar}') || '[]')"
        return [float(v) for v in self.page.evaluate(script)]

    def wait_until_ended(self, status: str = "#status", timeout_ms: float = 200_000) -> str:
        """Wait until the page says ``Done`` or ``Failed…`` in ``status``; what it says."""
        script = f"(s => s === 'Done' || s.startsWith('Failed'))(document.querySelector({status!r}).textContent)"
        self.page.wait_for_function(script, timeout=timeout_ms)
        return str(self.page.inner_text(status))

    def assert_never_saw(self, api_key: str) -> None:
        """The key (or its secret part) is in none of the page's data, storage, traffic, or built files."""
        site = built_site(self.example)
        places = {
            "the page": self.page.evaluate(SCAN_PAGE),
            "its storage": json.dumps(self.context.storage_state()),
            "its traffic": "\n".join(self.traffic),
            "its build": "\n".join(p.read_text(errors="replace") for p in site.rglob("*") if p.is_file()),
        }
        for where, text in places.items():
            assert api_key not in text, where
            assert key_secret(api_key) not in text, where


@contextmanager
def open_example(example: str, chromium: Any, gateway_url: str, api_key: str) -> Iterator[ExamplePage]:
    """The example's app server, its origin allowed, and its page open in ``chromium``."""
    with running_app_server(example, gateway_url, api_key) as origin:
        allow_origin(gateway_url, api_key, origin)
        context = chromium.new_context()
        try:
            context.add_init_script(RECORD_PROGRESS)
            context.set_default_timeout(30_000)
            opened = ExamplePage(example, origin, context, context.new_page())
            opened.page.on("pageerror", lambda e: opened.errors.append(str(e)))
            record_traffic(opened.page, opened.traffic)
            opened.page.goto(origin + "/")
            yield opened
        finally:
            context.close()
