"""CPU a process used, from ``/proc``: the fault suite's guard against a loop that spins after a fault."""

from __future__ import annotations

import asyncio
import os

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (its own threads, not its children)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def core_share(pids: dict[str, int], window_s: float) -> dict[str, float]:
    """The share of one core each named process used over the next ``window_s`` seconds."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    await asyncio.sleep(window_s)
    return {name: (cpu_seconds(pid) - before[name]) / window_s for name, pid in pids.items()}
