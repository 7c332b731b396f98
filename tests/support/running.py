"""Which tests are running when a run is cut short: a line in the log instead of silence.

Each make phase runs under a time limit (the Makefile) that interrupts pytest (SIGINT) before CI's own
limit ends the job without a word. Every process of the run (the xdist workers too) keeps the test it
is in under :data:`RUNNING_DIR`; on the interrupt the main process prints them, so a test that hangs
is named.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

RUNNING_DIR = Path(__file__).resolve().parents[2] / ".gpurelay-test" / "running"


_recording = False
"""Whether this process runs tests (an xdist controller only hears of its workers' tests)."""


def _mine() -> Path:
    return RUNNING_DIR / str(os.getpid())


def pytest_sessionstart(session: pytest.Session) -> None:
    global _recording
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    _recording = bool(worker) or not getattr(session.config.option, "numprocesses", None)
    if not worker:  # a new run: what an earlier one left is stale
        for stale in RUNNING_DIR.glob("*"):
            stale.unlink(missing_ok=True)
    RUNNING_DIR.mkdir(parents=True, exist_ok=True)


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    if _recording:
        _mine().write_text(nodeid)


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    if _recording:
        _mine().unlink(missing_ok=True)


def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    running = sorted(p.read_text() for p in RUNNING_DIR.glob("*") if p.is_file())
    print("\ntests running when the run was interrupted:" if running else "\nno test was running")
    for nodeid in running:
        print(f"  {nodeid}")
