"""The body of one local pool process: a warm worker that runs attempts sent over its pipe.

It starts its own session (so the dispatcher can end the whole process group on cancel), connects
to NATS once, reports ``ready``, then for each :class:`~contracts.runs.RunRequest` it
receives imports the workload (``module:function``, cached), runs it through the runtime (events
straight to NATS) and sends back the :class:`~contracts.runs.Outcome`. It exits when the
pipe closes (the dispatcher went away) or on ``None``. Given the dispatcher's pid
(``local_workers_die_with_dispatcher``), it also ends, busy or not, when the dispatcher dies: the
kernel sends it SIGTERM then (Linux), on which it ends its whole process group, so whatever the
workload started goes too.
"""

from __future__ import annotations

import importlib
import os
import signal
from multiprocessing.connection import Connection
from typing import Any

from contracts.envelope import EventEnvelope
from contracts.subjects import Namespace, Subjects
from services.common.config import DispatcherSettings
from services.common.processes import die_with_parent


def import_ref(ref: str) -> Any:
    """The object named by ``module:attribute``."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _end_group(signum: int, frame: object) -> None:
    """SIGTERM (the dispatcher died): SIGKILL this worker's process group, itself included."""
    os.killpg(os.getpgid(0), signal.SIGKILL)


def worker_main(conn: Connection, settings: DispatcherSettings, parent_pid: int | None = None) -> None:
    """Serve run requests from ``conn`` until it closes or the process ``parent_pid`` dies."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the dispatcher's to handle
    if parent_pid is not None:
        signal.signal(signal.SIGTERM, _end_group)
        die_with_parent(parent_pid, signal.SIGTERM)
    from contracts.runs import Outcome, RunRequest
    from modal_workers.runtime import WorkerRuntime
    from services.common.storage import make_storage

    runtime = WorkerRuntime(
        lambda: NatsSink.connect(settings.nats_url, settings.namespace), lambda: make_storage(settings)
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
            try:
                workload = cache.get(request.function) or import_ref(request.function)
                cache[request.function] = workload
            except (ImportError, AttributeError) as exc:
                workload = _missing(request.function, exc)
            outcome: Outcome = runtime.run(workload, request)
            try:
                conn.send(outcome.model_dump(mode="json"))
            except (BrokenPipeError, OSError):
                return
    finally:
        runtime.close()


def _missing(ref: str, exc: Exception) -> Any:
    from modal_workers.runtime import PermanentError

    def fail(spec: Any, ctx: Any) -> None:
        raise PermanentError("workload_missing", f"the workload {ref!r} cannot be imported: {exc}")

    return fail


class NatsSink:
    """Events straight to JetStream, deduplicated by ``Nats-Msg-Id``."""

    def __init__(self, nats_url: str, namespace: str = "") -> None:
        self.nats_url, self.namespace = nats_url, namespace
        self._nc: Any = None

    @classmethod
    async def connect(cls, nats_url: str, namespace: str = "") -> NatsSink:
        """A connected sink."""
        import nats

        sink = cls(nats_url, namespace)
        sink._nc = await nats.connect(nats_url, name="gpurelay-worker", max_reconnect_attempts=-1)
        return sink

    async def send(self, subject_event: str, event: EventEnvelope) -> None:
        """Publish and wait for the stream's ack."""
        assert event.job_id is not None
        subject = Subjects(Namespace(self.namespace)).job_event(event.tenant, event.job_id, subject_event)
        await self._nc.jetstream().publish(subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.id})

    async def close(self) -> None:
        """Flush and close the connection."""
        if self._nc is not None:
            await self._nc.drain()
