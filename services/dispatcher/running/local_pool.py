"""The local backend's pool of warm worker processes.

``size`` processes are started ahead of time, each connected to NATS and waiting on its pipe (see
:mod:`modal_workers.runtime.local_host`), so an attempt starts without an interpreter start-up. They are
forked by multiprocessing's fork server, which imports the worker's modules (:data:`PRELOAD`) once: a
process starts in milliseconds instead of an interpreter's start and a second of imports (as ``spawn``
did), with no inherited event loop or sockets (the server is a fresh interpreter that runs nothing else),
and without the dispatcher's main module (see :func:`~services.common.processes.spawning_without_main`).
The dispatcher :meth:`LocalPool.acquire`\\ s an idle process, :meth:`LocalPool.run`\\ s a request on it,
and gets its outcome back over the pipe.

A crash is seen at once: :meth:`LocalPool.run` waits on the pipe *and* the process sentinel
(:meth:`~services.dispatcher.running.pool_process.PoolProcess.receive`), so a non-zero exit or a SIGKILL
raises :class:`~services.dispatcher.running.pool_process.WorkerLostError` as soon as the kernel reports
it. :meth:`LocalPool.kill` ends the process group; every dead process is replaced in the background.
With ``local_workers_die_with_dispatcher`` (``gpurelay dev``) the processes die with this one however
it ends; otherwise a busy one finishes its attempt and reports straight to NATS (unless the attempt is
dispatched again meanwhile: it then stops, and ends itself ``local_worker_superseded_grace_s`` later if
its workload does not), and an idle one exits when its pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os

from contracts.runs import Outcome, RunRequest
from modal_workers.runtime.local_host import worker_main
from services.common.nats.identity import as_identity
from services.common.processes import spawning_without_main
from services.dispatcher.running.pool_process import PoolProcess, WorkerLostError, kill_group
from services.dispatcher.running.scratch import PoolScratch
from services.dispatcher.settings import DispatcherSettings

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 60.0
PRELOAD = [
    "modal_workers.runtime.local_host",
    "contracts.runs",
    "modal_workers.runtime.sinks",
    "modal_workers.runtime.worker_runtime",
    "services.common.nats.identity",
    "services.common.observability.tracing",
    "services.common.storage",
]
"""What the fork server imports before it forks a pool process: what :func:`worker_main` imports."""
EXIT_GRACE_S = 3.0
"""How long a stopping pool waits for a process to exit before it kills its group (and again after)."""


class LocalPool:
    """``size`` warm worker processes running workloads with events straight to NATS."""

    def __init__(self, settings: DispatcherSettings, size: int | None = None) -> None:
        self.settings = settings
        self.size = size or settings.local_pool_size
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)  # until the server starts (it is one per process)
        self._idle: asyncio.Queue[PoolProcess] = asyncio.Queue()
        self._all: set[PoolProcess] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.scratch = PoolScratch(settings.local_worker_scratch_dir)

    async def start(self) -> None:
        """Start every process and wait until each is connected and ready."""
        await asyncio.to_thread(self.scratch.open)
        await asyncio.gather(*(self._spawn() for _ in range(self.size)))

    async def _spawn(self) -> None:
        parent, child = self._ctx.Pipe()
        parent_pid = os.getpid() if self.settings.local_workers_die_with_dispatcher else None
        s = self.settings
        worker = as_identity(s, s.local_worker_nats_user, s.local_worker_nats_password)  # not the dispatcher's
        scratch = str(self.scratch.root) if self.scratch.root is not None else None
        env = {**os.environ, **s.local_worker_env}  # the fork server's own is as old as the server
        args = (child, worker, env, parent_pid, scratch, s.local_worker_superseded_grace_s)
        process = self._ctx.Process(target=worker_main, args=args, daemon=False)
        # On the loop's thread, one at a time (spawning_without_main hides __main__ for the call). The first
        # start waits for the fork server's imports (about 0.7 s, while the dispatcher starts); later ones a fork.
        with spawning_without_main():  # the worker imports what it runs, not the dispatcher's CLI
            process.start()
        child.close()
        proc = PoolProcess(process, parent)
        self._all.add(proc)
        try:
            message = await asyncio.wait_for(proc.receive(), READY_TIMEOUT_S)
        except (WorkerLostError, TimeoutError):
            log.exception("local worker did not start")
            self.kill(proc)  # one that never answered must not linger
            proc.process.kill()
            await asyncio.to_thread(proc.process.join, 3)
            self._discard(proc)
            raise
        if self._closing:
            self.kill(proc)
            return
        log.debug("local worker ready", extra={"pid": message})
        self._idle.put_nowait(proc)

    async def acquire(self) -> PoolProcess:
        """An idle process (waits while all are busy). One that died while idle (killed, out of
        memory) is replaced, not handed out: its first run would fail for nothing."""
        while True:
            proc = await self._idle.get()
            if proc.process.is_alive():
                return proc
            log.warning("local worker %d died while idle; starting another", proc.pid)
            self._replace(proc)

    def release(self, proc: PoolProcess) -> None:
        """Give a process that finished its run back to the pool."""
        if proc in self._all and proc.process.is_alive():
            self._idle.put_nowait(proc)
        else:
            self._replace(proc)

    async def run(self, proc: PoolProcess, request: RunRequest) -> Outcome:
        """Run ``request`` on ``proc`` and return its outcome; :class:`WorkerLostError` and ``proc``
        replaced if it died (before the request reached it too: a closed pipe)."""
        proc.running = (request.job_id, request.attempt)
        try:
            proc.conn.send(request.model_dump(mode="json"))
            return Outcome.model_validate(await proc.receive())
        except (WorkerLostError, OSError) as exc:
            self._replace(proc)
            if isinstance(exc, WorkerLostError):
                raise
            raise WorkerLostError(proc.pid, proc.process.exitcode) from exc
        finally:
            proc.running = None

    def runs(self, pid: int) -> tuple[str, int] | bool | None:
        """What the pool's process ``pid`` is running (job id, attempt), ``None`` while it is idle;
        ``False`` when ``pid`` is none of this pool's processes."""
        for proc in self._all:
            if proc.pid == pid:
                return proc.running
        return False

    def kill(self, proc: PoolProcess) -> None:
        """End ``proc``'s whole process group now (SIGKILL); it is replaced once reaped."""
        kill_group(proc.pid)

    def _discard(self, proc: PoolProcess) -> None:
        """Forget ``proc`` (which has ended); its scratch folder goes (the root, at the pool's stop)."""
        self._all.discard(proc)
        with contextlib.suppress(OSError):
            proc.conn.close()
        if not self._closing and not proc.process.is_alive():
            self._track(asyncio.create_task(self.scratch.remove(proc.pid)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _replace(self, proc: PoolProcess) -> None:
        if proc not in self._all:
            return
        self._discard(proc)
        if not self._closing:
            self._track(asyncio.create_task(self._respawn()))

    async def _respawn(self) -> None:
        """Replace a dead process, trying again (after a pause) until it starts or the pool closes."""
        for pause in (0.0, 1.0, 2.0, 5.0, 10.0, 30.0):
            await asyncio.sleep(pause)
            if self._closing:
                return
            try:
                await self._spawn()
                return
            except (WorkerLostError, TimeoutError, OSError):
                log.warning("local worker restart failed; trying again")
        log.error("local worker could not be restarted: the pool is one process smaller")

    async def stop(self) -> None:
        """Ask idle processes to exit, kill busy ones, and reap all, together: a busy process is given
        :data:`EXIT_GRACE_S` once, not one after the other (three busy ones took 9.6 s to stop)."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for proc in list(self._all):
            with contextlib.suppress(OSError):
                proc.conn.send(None)
        await asyncio.gather(*(self._reap(proc) for proc in list(self._all)))
        await self.scratch.close()

    async def _reap(self, proc: PoolProcess) -> None:
        await asyncio.to_thread(proc.process.join, EXIT_GRACE_S)
        if proc.process.is_alive():
            kill_group(proc.pid)
            await asyncio.to_thread(proc.process.join, EXIT_GRACE_S)
        self._discard(proc)

    def occupancy(self) -> dict[str, int]:
        """How many processes the pool should have (``size``), has started, and of those are idle or busy."""
        started, idle = len(self._all), self._idle.qsize()
        return {"size": self.size, "started": started, "idle": idle, "busy": max(0, started - idle)}

    @property
    def pids(self) -> list[int]:
        """The pids of the live pool processes."""
        return [p.pid for p in self._all if p.process.is_alive()]
