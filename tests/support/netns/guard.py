"""What makes a run's namespaces go away however the run ends.

* :func:`register`: a live :class:`~tests.support.netns.network.TestNet` is torn down at exit
  (``atexit``) and on SIGTERM/SIGHUP (the handler tears down, then dies of the signal as before);
  a fixture's finalizer tears it down first on a normal end or Ctrl-C.
* :func:`record`: before anything is made, the run's id, subnet and owner pid are written under
  :data:`RUNS`, so a run that was SIGKILLed (no handler runs) is removed by the next run's
  :func:`sweep_orphans`; a run whose owner still lives is never touched.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from services.common.processes import is_running

RUNS = Path("/run/gpurelay-netns")
_live: list[Any] = []
_installed: dict[int, Any] = {}


class _Net(Protocol):
    def teardown(self) -> None: ...


def register(net: _Net) -> None:
    """Tear ``net`` down at exit or on SIGTERM/SIGHUP unless it is torn down before."""
    _install()
    _live.append(net)


def unregister(net: _Net) -> None:
    """``net`` is gone."""
    with contextlib.suppress(ValueError):
        _live.remove(net)


def teardown_all() -> None:
    """Tear down every registered net (the newest first)."""
    while _live:
        net = _live.pop()
        with contextlib.suppress(Exception):
            net.teardown()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    teardown_all()
    previous = _installed.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install() -> None:
    if _installed:
        return
    atexit.register(teardown_all)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        _installed[signum] = signal.signal(signum, _on_signal)


def record(run_id: str, subnet: str) -> None:
    """Write down run ``run_id`` (owner pid, subnet) before any of it is made."""
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / run_id).write_text(json.dumps({"pid": os.getpid(), "subnet": subnet}))


def forget(run_id: str) -> None:
    """Run ``run_id`` is removed."""
    (RUNS / run_id).unlink(missing_ok=True)


def sweep_orphans(teardown_run: Callable[[str], None]) -> list[str]:
    """Tear down every recorded run whose owner process is gone; their ids."""
    swept = []
    for path in sorted(RUNS.glob("gnf*")) if RUNS.is_dir() else []:
        try:
            owner = int(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            owner = 0
        if owner == os.getpid() or (owner and is_running(owner)):
            continue
        teardown_run(path.name)
        swept.append(path.name)
    return swept
