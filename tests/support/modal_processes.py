"""A stand-in for Modal's remote calls that runs each call's worker for real, in a child process.

:class:`ProcessModal` is a :class:`~services.dispatcher.running.modal_backend.ModalClient`. What is real:
the dispatcher's Modal backend (its kwargs, ingest token, result loop and cancel), and the worker:
each spawn starts ``python -m tests.support.modal_container``, which calls
:func:`modal_workers.app.run_request` (what the Modal functions and classes run) with the kwargs
the dispatcher built. So the worker reaches the platform only as a Modal container does: events to
the gateway's ingest route, a session's input from the gateway's feed socket. What is faked: Modal's
control plane (spawn, get, cancel), the image (this virtualenv), which workload a class runs
(``workloads``: class or function name → ``module:function``) and the storage secret (the child's
environment gets ``GPURELAY_DATA_DIR`` for the ``local`` backend, nothing else of ``GPURELAY_*``
but the echo workload's ``GPURELAY_TEST_*`` knobs: no NATS URL).

``result`` behaves as ``FunctionCall.get(timeout=...)``: the outcome once the process returned it,
the builtin ``TimeoutError`` while it runs past ``timeout``, ``modal.exception.RemoteError`` for a
canceled call and ``modal.exception.InternalFailure`` for a worker that died without an outcome
(killed, crashed). ``cancel`` kills the process, as ``FunctionCall.cancel()`` stops the container.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modal.exception import InternalFailure, RemoteError

from services.common.processes import preexec_die_with_parent

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Call:
    """One spawned call: its process, where its outcome lands, whether it was canceled."""

    process: asyncio.subprocess.Process
    outcome_path: Path
    env: dict[str, str]
    canceled: bool = False


@dataclass
class ProcessModal:
    """Modal calls as child processes of this test (``close()`` kills what still runs)."""

    workdir: Path
    data_dir: Path
    workloads: dict[str, str]
    calls: dict[str, Call] = field(default_factory=dict)

    async def spawn(self, app: str, function: str, kwargs: dict[str, Any]) -> str:
        """``Function.from_name(app, function).spawn(**kwargs)``."""
        return await self._start(self.workloads[function], kwargs)

    async def spawn_method(self, app: str, cls: str, method: str, kwargs: dict[str, Any]) -> str:
        """``Cls.from_name(app, cls)().method.spawn(**kwargs)``."""
        return await self._start(self.workloads[cls], kwargs)

    def worker_env(self) -> dict[str, str]:
        """The child's environment: this one without the platform's settings, plus the storage's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPURELAY_") or k.startswith("GPURELAY_TEST_")}
        path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        return env | {"GPURELAY_DATA_DIR": str(self.data_dir), "PYTHONPATH": path}

    async def _start(self, workload: str, kwargs: dict[str, Any]) -> str:
        call_id = f"fc-{len(self.calls) + 1}"
        kwargs_path, outcome_path = self.workdir / f"{call_id}.kwargs.json", self.workdir / f"{call_id}.outcome.json"
        self.workdir.mkdir(parents=True, exist_ok=True)
        kwargs_path.write_text(json.dumps(kwargs))
        env = self.worker_env()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.modal_container", workload, str(kwargs_path), str(outcome_path),
            env=env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, preexec_fn=preexec_die_with_parent(),
        )  # fmt: skip
        self.calls[call_id] = Call(process, outcome_path, env)
        return call_id

    async def result(self, call_id: str, timeout_s: float) -> Any:
        """The call's outcome (JSON), as ``FunctionCall.get(timeout=timeout_s)``."""
        call = self.calls[call_id]
        try:
            async with asyncio.timeout(timeout_s):
                code = await call.process.wait()
        except TimeoutError:
            raise TimeoutError() from None  # what FunctionCall.get raises while the call runs
        if call.canceled:
            raise RemoteError(f"call {call_id} was cancelled")
        if code != 0 or not call.outcome_path.exists():
            raise InternalFailure(f"the container of {call_id} exited with {code} and no result")
        return json.loads(call.outcome_path.read_text())

    async def cancel(self, call_id: str) -> None:
        """Stop the call's container (kill its process)."""
        call = self.calls[call_id]
        call.canceled = True
        if call.process.returncode is None:
            call.process.kill()

    async def close(self) -> None:
        """Kill every call still running and reap it."""
        for call in self.calls.values():
            if call.process.returncode is None:
                call.process.kill()
            await call.process.wait()
