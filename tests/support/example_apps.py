"""The web examples in tests: their app server (``examples/app_server.py``) in a child process that dies
with the test, and the gateway told to allow its origin."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from services.common.processes import preexec_die_with_parent

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
