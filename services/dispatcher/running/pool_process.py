"""One warm worker process of the local pool, as the dispatcher sees it: its pipe and its death.

A :class:`PoolProcess` is the parent's end of a pool process's pipe. :meth:`PoolProcess.receive`
waits on the pipe *and* the process sentinel with the event loop's readers, so a non-zero exit or a
SIGKILL raises :class:`WorkerLostError` as soon as the kernel reports it (no polling), and
:func:`kill_group` ends the process and everything it started. The pool that starts, hands out and
replaces them is :mod:`services.dispatcher.running.local_pool`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any


class WorkerLostError(Exception):
    """A pool process ended without an outcome (crash, kill, non-zero exit)."""

    def __init__(self, pid: int, exitcode: int | None) -> None:
        super().__init__(f"worker process {pid} ended with exit code {exitcode}")
        self.pid, self.exitcode = pid, exitcode


@dataclass(eq=False)
class PoolProcess:
    """One warm worker process and the parent's end of its pipe."""

    process: BaseProcess
    conn: Connection
    running: tuple[str, int] | None = None
    """The job id and attempt of the run it is on, ``None`` while idle."""

    @property
    def pid(self) -> int:
        """The process id, which is also its process group id."""
        assert self.process.pid is not None
        return self.process.pid

    async def receive(self) -> Any:
        """The next message from the process; :class:`WorkerLostError` as soon as it dies instead."""
        loop = asyncio.get_running_loop()
        woke: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not woke.done():
                woke.set_result(None)

        fds = (self.conn.fileno(), self.process.sentinel)
        for fd in fds:
            loop.add_reader(fd, wake)
        try:
            await woke
        finally:
            for fd in fds:
                loop.remove_reader(fd)
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        await asyncio.to_thread(self.process.join, 5)
        raise WorkerLostError(self.pid, self.process.exitcode)


def kill_group(pgid: int) -> None:
    """SIGKILL a process group (a worker and everything it started); a gone group is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
