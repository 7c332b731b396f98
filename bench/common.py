"""Shared helpers of the benchmarks: the machine, repeated timings and the :class:`Result` record."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.common.processes import usable_cores

REPEATS = 3


@dataclass(frozen=True)
class Result:
    """One benchmark figure.

    ``baseline`` is the figure of the simpler way measured in the same run (same unit), ``ratio``
    is ``value / baseline``, ``target`` the smallest ``value`` the design counts on; each may be
    ``None`` where there is none. ``run`` names the run that measured it (date, machine, Python):
    ``bench/run.py --only`` keeps other modules' figures, measured by earlier runs, maybe elsewhere.
    """

    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: float | None = None
    run: str | None = None

    @classmethod
    def compare(cls, name: str, value: float, unit: str, baseline: float | None, target: float | None = None) -> Result:
        """A result whose ratio is computed against ``baseline``."""
        ratio = value / baseline if baseline else None
        return cls(name, value, unit, baseline, ratio, target)

    @property
    def meets_target(self) -> bool | None:
        """Whether ``value`` reaches ``target`` (``None`` without a target)."""
        return None if self.target is None else self.value >= self.target

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: name, value, unit, baseline, ratio, target, run."""
        return asdict(self)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform knows."""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def memory_gib() -> float | None:
    """Total memory in GiB from /proc/meminfo."""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return None


def os_name() -> str:
    """The distribution's pretty name and the kernel, e.g. ``Debian GNU/Linux 12 (Linux 6.1)``."""
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return f"{line.split('=', 1)[1].strip(chr(34))} ({platform.system()} {platform.release()})"
    return platform.platform()


def machine() -> dict[str, Any]:
    """A description of this machine for the report."""
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "cpu_count": os.cpu_count(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": os_name(),
        "arch": platform.machine(),
    }


def median(values: Iterable[float]) -> float:
    """The median of ``values``."""
    return float(statistics.median(list(values)))


def median_time(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    """The median wall time in seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


async def median_async(fn: Callable[[], Awaitable[float]], repeats: int = REPEATS) -> float:
    """The median of what ``repeats`` awaited calls of ``fn`` return (each returns its own figure)."""
    return median([await fn() for _ in range(repeats)])


def rate(count: int, seconds: float) -> float:
    """``count`` per second, ``inf``-safe."""
    return count / seconds if seconds > 0 else float("inf")


def fmt_number(value: float | None) -> str:
    """``12,345`` for large figures, ``1.23`` for small ones, ``-`` for none."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def format_table(results: Iterable[Result]) -> str:
    """A plain-text table for the terminal."""
    rows = [("figure", "value", "unit", "baseline", "ratio", "target")]
    for r in results:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        target = f">= {fmt_number(r.target)}" if r.target is not None else "-"
        rows.append((r.name, fmt_number(r.value), r.unit, fmt_number(r.baseline), ratio, target))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def write_json(results: Iterable[Result], path: Path) -> Path:
    """``results`` as a JSON list of {name, value, unit, baseline, ratio, target, run}."""
    path.write_text(json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    return path
