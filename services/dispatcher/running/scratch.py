"""The local pool's scratch folders: one per worker process, removed once that process is gone.

A run's temporary folder (:attr:`~modal_workers.runtime.context.RunContext.work_dir`) is removed by the
runtime after the run; a worker killed mid-run (a time-out, a cancel, out of memory, SIGKILL) never gets
there, and its folder (the job's inputs, frames, outputs: megabytes a run) stayed in the system's
temporary folder for good. So each pool process works in a folder of its own,
``{root}/worker-{pid}`` (:func:`~services.common.processes.use_scratch`: its ``TMPDIR``, so what the
workload's tools write goes there too), under one root per dispatcher process,
``{local_worker_scratch_dir}/gpurelay-pool-{host}-{dispatcher pid}-*``. The pool removes a worker's
folder once the worker has ended, the root when it stops; a pool that starts removes what dispatchers
of its host that no longer run left, except the folders of their workers still running (a busy worker
outlives a dispatcher that dies, and finishes its attempt). Roots of other hosts (a folder shared by
containers, whose pids mean nothing here) are left alone.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from services.common.processes import SCRATCH_PREFIX, is_running, scratch_folder

log = logging.getLogger(__name__)
ROOT_PREFIX = "gpurelay-pool-"


def _pid_in(name: str, prefix: str) -> int | None:
    head = name.removeprefix(prefix).split("-", 1)[0]
    return int(head) if name.startswith(prefix) and head.isdigit() else None


def root_prefix(host: str | None = None) -> str:
    """The start of the names of a host's roots (``host``: this one's by default)."""
    return f"{ROOT_PREFIX}{host or socket.gethostname()}-"


def sweep_left_over(base: Path, host: str | None = None) -> int:
    """Remove the roots under ``base`` of this host's dispatchers that no longer run, but the folders of
    their workers still running; how many folders went."""
    removed, prefix = 0, root_prefix(host)
    for root in base.glob(f"{glob.escape(prefix)}*"):
        owner = _pid_in(root.name, prefix)
        if owner is None or is_running(owner) or not root.is_dir():
            continue
        for folder in root.iterdir():
            worker = _pid_in(folder.name, SCRATCH_PREFIX)
            if worker is None or not is_running(worker):
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        try:
            root.rmdir()  # only once empty: a worker still running keeps it
        except OSError:
            continue
    return removed


class PoolScratch:
    """One dispatcher's root of worker folders (see the module's docstring)."""

    def __init__(self, base: Path | None) -> None:
        self.base = Path(base) if base is not None else Path(tempfile.gettempdir())
        self.root: Path | None = None

    def open(self) -> Path:
        """Sweep what dispatchers gone left here, then make this one's root; the root."""
        self.base.mkdir(parents=True, exist_ok=True)
        if removed := sweep_left_over(self.base):
            log.info("removed %d scratch folder(s) of pool workers gone", removed)
        self.root = Path(tempfile.mkdtemp(prefix=f"{root_prefix()}{os.getpid()}-", dir=self.base))
        return self.root

    async def remove(self, pid: int) -> None:
        """Remove the folder of the pool process ``pid``, which has ended."""
        if self.root is not None:
            await asyncio.to_thread(shutil.rmtree, scratch_folder(self.root, pid), True)

    async def close(self) -> None:
        """Remove the root and what is left in it (every worker has ended)."""
        root, self.root = self.root, None
        if root is not None:
            await asyncio.to_thread(shutil.rmtree, root, True)
