"""Backends run one attempt (or one pipeline stage) of a job somewhere.

A backend :meth:`~Backend.reserve`\\ s capacity (the local pool waits for an idle process; Modal
needs none), :meth:`~Backend.launch`\\ es a :class:`~contracts.runs.RunRequest` and answers
a :class:`Launch`: the call id (kept in the record for cancel), a task that completes with the
run's :class:`~contracts.runs.Outcome` (or raises when the worker is lost), and a way to
cancel it. ``announce`` is called with the call id once it is known and before the worker can
emit anything, so ``job.dispatched`` precedes the worker's own events in the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from contracts.route_table import Route, Stage
from contracts.runs import Outcome, RunRequest
from services.dispatcher.running.local_pool import LocalPool
from services.dispatcher.running.pool_process import PoolProcess, kill_group

Announce = Callable[[str, str | None], Awaitable[int]]
"""``announce(call_id, gpu)``: publish ``job.dispatched`` for the run; its JOBS sequence (the worker's
fence, :attr:`~contracts.runs.RunRequest.dispatched_seq`; 0: none)."""

log = logging.getLogger(__name__)


class BackendUnavailableError(Exception):
    """The backend could not take the run (a retryable failure)."""


class LaunchedElsewhereError(Exception):
    """``announce`` found the attempt launched by another replica first: this launch must not run."""


@dataclass
class Launch:
    """A run in progress."""

    call_id: str
    outcome: asyncio.Task[Outcome]
    cancel: Callable[[], Awaitable[None]]


class Backend(Protocol):
    """Where runs go."""

    name: str

    async def reserve(self) -> Any:
        """Wait for capacity; the reservation is handed to :meth:`launch` or :meth:`release`."""

    def release(self, reservation: Any) -> None:
        """Give back a reservation that was not launched."""

    async def launch(
        self, reservation: Any, request: RunRequest, route: Route, stage: Stage, announce: Announce
    ) -> Launch:
        """Start ``request``; ``announce`` is awaited before the worker starts (local) or
        right after the spawn (Modal)."""

    async def cancel_call(self, call_id: str, job_id: str = "", attempt: int = 0) -> None:
        """Cancel a run known only by its call id (one started by another replica): ``job_id``'s
        ``attempt``."""


class LocalBackend:
    """The warm process pool of this machine."""

    name = "local"

    def __init__(self, pool: LocalPool) -> None:
        self.pool = pool
        self.host = socket.gethostname()

    async def reserve(self) -> PoolProcess:
        """An idle pool process."""
        return await self.pool.acquire()

    def release(self, reservation: Any) -> None:
        """Put an unused process back."""
        self.pool.release(reservation)

    async def launch(
        self, reservation: Any, request: RunRequest, route: Route, stage: Stage, announce: Announce
    ) -> Launch:
        """Run on the reserved process; the call id names this host and the process group."""
        proc: PoolProcess = reservation
        call_id = f"local:{self.host}:{proc.pid}"
        try:
            dispatched_seq = await announce(call_id, None)
        except BaseException:
            self.pool.release(proc)
            raise
        request = request.model_copy(update={"worker": f"local-{proc.pid}", "dispatched_seq": dispatched_seq})

        async def run() -> Outcome:
            outcome = await self.pool.run(proc, request)
            self.pool.release(proc)
            return outcome

        async def cancel() -> None:
            self.pool.kill(proc)

        return Launch(call_id, observed(asyncio.create_task(run())), cancel)

    async def cancel_call(self, call_id: str, job_id: str = "", attempt: int = 0) -> None:
        """Kill the process group of a run on this host (after a dispatcher restart). A process of this
        replica's own pool is killed only while it runs that attempt: pool processes are reused, so
        the call's pid may be idle or on another job by now (its worker ended the attempt)."""
        _, host, pid = ([*call_id.split(":"), "", ""])[:3]
        if host != self.host or not pid.isdigit():
            return
        running = self.pool.runs(int(pid))
        if running is False or running == (job_id, attempt):
            kill_group(int(pid))
        else:
            log.info("not killing pool process %s: it runs %s now, not %s attempt %d", pid, running, job_id, attempt)


def observed(task: asyncio.Task[Outcome]) -> asyncio.Task[Outcome]:
    """``task``, its exception marked as seen (a run abandoned at shutdown is not an error)."""
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


class UnroutedBackend:
    """Stands in for a backend this process does not have (fails every launch, retryably)."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def reserve(self) -> None:
        """Nothing to reserve."""

    def release(self, reservation: Any) -> None:
        """Nothing to release."""

    async def launch(
        self, reservation: Any, request: RunRequest, route: Route, stage: Stage, announce: Announce
    ) -> Launch:
        """Always :class:`BackendUnavailableError`."""
        raise BackendUnavailableError(f"backend {self.name!r} is not configured in this dispatcher")

    async def cancel_call(self, call_id: str, job_id: str = "", attempt: int = 0) -> None:
        """Nothing to cancel."""
        with contextlib.suppress(Exception):
            return
