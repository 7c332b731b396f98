"""The memory of ``gpurelay dev`` at rest, run as a user runs it: the console script as its own process.

The embedded stack started inside a bench process (:func:`~bench.harness.platform_runs.embedded_stack`)
is not what a user runs: its main module is the bench's, and a ``spawn`` child (each local pool
process) starts from the parent's main module. So the memory figure comes from ``gpurelay dev`` itself,
started from ``script`` (the installed console script unless told), its whole process tree summed once
it has been ready for ``warm_s`` and no job ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from bench.harness.service_processes import gpurelay_script

READY_LINE = b"gpurelay dev ready"
READY_S = 120.0
STOP_S = 30.0


async def dev_rss_mb(data_dir: Path, warm_s: float = 5.0, script: str | None = None) -> float:
    """Start ``gpurelay dev`` on ``data_dir`` (any free ports), wait until it says it is ready and
    ``warm_s`` more, and return the VmRSS summed over its process tree, in MB; it is stopped (SIGTERM)
    before this returns, however it ends."""
    command = [sys.executable, script or gpurelay_script(), "dev", "--port", "0", "--data-dir", str(data_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_")}
    proc = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True
    )
    assert proc.stdout is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(READY_S):
            while READY_LINE not in (line := await proc.stdout.readline()):
                if not line:
                    raise RuntimeError(f"gpurelay dev ended before it was ready (exit {await proc.wait()})")
        drain = asyncio.create_task(proc.stdout.read())  # its log must not fill the pipe meanwhile
        await asyncio.sleep(warm_s)
        return stack_rss_mb(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)  # gpurelay dev stops its children (and they die with it)
        try:
            await asyncio.wait_for(proc.wait(), STOP_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if drain is not None:
            await drain


def stack_rss_mb(root: int | None = None) -> float:
    """The resident memory (``VmRSS``) of process ``root`` (this one if none) and every live descendant,
    in MB: for ``gpurelay dev``, its gateway, notifier and dispatcher, its nats-server and its pool."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    tree, frontier = set[int](), [root or os.getpid()]
    while frontier:
        pid = frontier.pop()
        if pid not in tree:
            tree.add(pid)
            frontier += [child for child, parent in parents.items() if parent == pid]
    total_kb = 0
    for pid in tree:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024
