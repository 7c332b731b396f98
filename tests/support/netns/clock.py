"""A step of one host's wall clock: libfaketime in that host's processes.

Network namespaces do not have clocks, and time namespaces (``unshare --time``) offset only
CLOCK_MONOTONIC and CLOCK_BOOTTIME, never CLOCK_REALTIME: a kernel cannot step one namespace's wall
clock. The nearest real thing is to step what one host's processes read: :class:`SteppedClock`
gives a host's environment libfaketime (Debian's ``faketime``; ``LD_PRELOAD``, inherited by the
processes it spawns) reading its offset from a file, with the monotonic clock left alone, as an
NTP step leaves it; :meth:`SteppedClock.step` rewrites the offset, which the processes read within
:data:`CACHE_S`. Python's ``time.sleep`` needs ``clock_site`` under this libfaketime (see there).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

CACHE_S = 1
"""How long libfaketime keeps the offset it read (seconds)."""
SITE = Path(__file__).resolve().parent / "clock_site"


def faketime_library() -> str | None:
    """Debian's multi-threaded libfaketime, if installed."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    return found[0] if found else None


class SteppedClock:
    """One host's wall clock, offset by what :meth:`step` last wrote (``+0`` at first)."""

    def __init__(self, root: Path) -> None:
        library = faketime_library()
        if library is None:
            raise RuntimeError("libfaketime is not installed (Debian's faketime package)")
        self.library = library
        root.mkdir(parents=True, exist_ok=True)
        self.offset_file = root / "clock-offset"
        self.offset_s = 0
        self.step(0)

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` for a process of the stepped host."""
        path = os.pathsep.join(filter(None, [str(SITE), env.get("PYTHONPATH")]))
        return {
            **env,
            "PYTHONPATH": path,
            "LD_PRELOAD": self.library,
            "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_CACHE_DURATION": str(CACHE_S),
        }

    def step(self, offset_s: int) -> None:
        """Set the host's wall clock ``offset_s`` from the real one (read within :data:`CACHE_S`)."""
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(f"{offset_s:+d}\n")
        tmp.replace(self.offset_file)
        self.offset_s = offset_s
