"""The body of one local pool process: a warm worker that runs attempts sent over its pipe.

The dispatcher's :class:`~services.dispatcher.running.local_pool.LocalPool` starts :func:`worker_main`
in each of its processes (the one place the dispatcher imports the workers' code), forked by the pool's
fork server. It starts its own session (so the dispatcher can end the whole process group on cancel),
takes ``env`` as its whole environment (the dispatcher's as the process starts, its ``local_worker_env``
on top: the fork server's is as old as the server), connects to NATS once, reports ``ready``, then for each
:class:`~contracts.runs.RunRequest` it receives loads the workload (``module:function``, cached), runs
it through the runtime (events straight to NATS with :class:`~modal_workers.runtime.sinks.NatsSink`)
and sends back the :class:`~contracts.runs.Outcome`. It exits when the pipe closes (the dispatcher
went away) or on ``None``. With an OTLP endpoint configured it exports its spans (each run's, in the
job's trace), flushed after every run. Given the dispatcher's pid
(``local_workers_die_with_dispatcher``), it also ends, busy or not, when the dispatcher dies: a thread
waiting on the dispatcher's pidfd (Linux) ends its whole process group then, so whatever the workload
started goes too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from services.common.config import BaseServiceSettings
from services.common.processes import use_scratch, when_process_ends

log = logging.getLogger(__name__)


def _end_group(signum: int, frame: object) -> None:
    """SIGTERM (the dispatcher died): SIGKILL this worker's process group, itself included."""
    os.killpg(os.getpgid(0), signal.SIGKILL)


class SupersededRuns:
    """Ends this process group when a run found superseded is still running ``grace_s`` later: a workload
    that never calls ``ctx.check_cancelled()`` would run on to its end, every event refused."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s, self.current, self._count = grace_s, 0, 0

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """One run, numbered (:attr:`current`) while it lasts."""
        self._count += 1
        self.current = self._count
        try:
            yield
        finally:
            self.current = 0

    def superseded(self, request: Any) -> None:
        """The run in progress found its attempt dispatched again: end the group unless it is over in time."""
        run = self.current

        def end_if_still_running() -> None:
            if run and self.current == run:
                log.warning("job %s attempt %s: superseded and still running after %.0f s; ending its process",
                            request.job_id, request.attempt, self.grace_s)  # fmt: skip
                _end_group(signal.SIGTERM, None)

        timer = threading.Timer(self.grace_s, end_if_still_running)
        timer.daemon = True
        timer.start()


def worker_main(
    conn: Connection,
    settings: BaseServiceSettings,
    env: dict[str, str],
    parent_pid: int | None = None,
    scratch_root: str | None = None,
    superseded_grace_s: float = 30.0,
) -> None:
    """Serve run requests from ``conn`` until it closes or the process ``parent_pid`` dies.

    ``settings`` are the dispatcher's (NATS, storage, tracing: what every service shares); ``env`` is
    the environment to run in; temporary files go to this process's folder under ``scratch_root``,
    which the pool removes once the process is gone. A run whose attempt was dispatched again elsewhere
    and whose workload has not stopped ``superseded_grace_s`` later ends this process group
    (:class:`SupersededRuns`): no dispatcher may be left to end it.
    """
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the dispatcher's to handle
    if parent_pid is not None:
        signal.signal(signal.SIGTERM, _end_group)
        # The parent is the fork server, which outlives the dispatcher while its children live: follow the
        # dispatcher itself.
        when_process_ends(parent_pid, lambda: _end_group(signal.SIGTERM, None))
    os.environ.clear()  # before any workload reads its settings
    os.environ.update(env)
    if scratch_root is not None:
        use_scratch(Path(scratch_root))
    from contracts.runs import RunRequest
    from modal_workers.runtime.sinks import NatsSink
    from modal_workers.runtime.worker_runtime import WorkerRuntime, load_workload
    from services.common.nats.identity import identity_options
    from services.common.observability import tracing
    from services.common.storage import make_storage

    tracing.setup_tracing(settings, "worker")
    options = identity_options(settings)  # the workers' own NATS user (the dispatcher's when it has none)
    runs = SupersededRuns(superseded_grace_s)
    runtime = WorkerRuntime(
        lambda: NatsSink.connect(settings.nats_url, settings.namespace, **options),
        lambda: make_storage(settings),
        on_superseded=runs.superseded,
    )
    cache: dict[str, Any] = {}
    conn.send({"ready": os.getpid()})
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message is None:
                return
            request = RunRequest.model_validate(message)
            with runs.running():
                outcome = runtime.run(load_workload(request.function, cache), request)
            tracing.flush()
            try:
                conn.send(outcome.model_dump(mode="json"))
            except (BrokenPipeError, OSError):
                return
    finally:
        runtime.close()
